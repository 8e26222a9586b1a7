"""Digests of scanned objects, computed in one pass over bytes already in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

HASH_LENGTHS = {16: "md5", 20: "sha1", 32: "sha256"}
ALGORITHMS = ("md5", "sha1", "sha256")


def digests(data: bytes | memoryview, algorithms: Iterable[str]) -> dict[str, bytes]:
    """The raw digests of ``data`` for each named algorithm."""
    return {name: hashlib.new(name, data, usedforsecurity=False).digest() for name in algorithms}


def algorithm_for_hex(hex_digest: str) -> str | None:
    """The algorithm a hex digest of this length belongs to (ClamAV decides by length), or None."""
    return HASH_LENGTHS.get(len(hex_digest) // 2) if len(hex_digest) % 2 == 0 else None
