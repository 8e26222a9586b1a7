"""Password hashing (Argon2id) and the rules a password must meet."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from garrison.server.errors import BadRequest

MIN_LENGTH = 12
_HASHER = PasswordHasher()
# A password is hashed even for unknown users, so that timing does not tell which usernames exist.
_DUMMY_HASH = _HASHER.hash("garrison-timing-equaliser")


def configure(time_cost: int, memory_kib: int) -> None:
    """Set the Argon2id cost (from the server settings, at start). Existing hashes are upgraded on login."""
    global _HASHER, _DUMMY_HASH  # noqa: PLW0603 - one hasher per process, configured by the entry point
    _HASHER = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
    _DUMMY_HASH = _HASHER.hash("garrison-timing-equaliser")


def hash_password(password: str) -> str:
    check_strength(password)
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)


def check_strength(password: str) -> None:
    """Refuse passwords too short or too uniform to resist guessing; the message says what to do."""
    if len(password) < MIN_LENGTH:
        raise BadRequest(f"the password must be at least {MIN_LENGTH} characters long")
    if len(set(password)) < 5:
        raise BadRequest("the password repeats too few different characters")
