"""Password hashing (Argon2id) and the rules a password must meet."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from garrison.server.errors import BadRequest

_HASHER = PasswordHasher()
MIN_LENGTH = 12

# A password is hashed even for unknown users, so that timing does not tell which usernames exist.
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
