"""Random secrets and how they are stored: only a SHA-256 of each is kept."""

from __future__ import annotations

import hashlib
import secrets


def new_token(prefix: str = "") -> str:
    """A URL-safe secret with 256 bits of randomness, optionally prefixed so leaks can be recognised."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
