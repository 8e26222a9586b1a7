"""The files of signature sources on disk, content-addressed: ``data_dir/signature-sources/<ab>/<sha256>``.

The same content is stored once, whatever source or version holds it; a blob is written atomically, so a reader
sees it whole or not at all, and checked against its name when read back. The database keeps which names and
versions use which blob. Nothing here knows about sources or the database.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from garrison.atomicfile import write_atomic

DIRECTORY = "signature-sources"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class StoreError(Exception):
    """A blob is missing or does not match its SHA-256 (the data directory was damaged or changed by hand)."""


class SourceStore:
    """Signature files in ``data_dir/signature-sources``, named by their SHA-256."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = Path(data_dir) / DIRECTORY

    def _path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a SHA-256: {sha256[:80]!r}")
        return self.directory / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        """Keep ``data`` (once) and return its SHA-256."""
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._path(sha256)
        if not (path.is_file() and path.stat().st_size == len(data)):
            write_atomic(path, data, mode=0o640)
        return sha256

    def get(self, sha256: str) -> bytes:
        try:
            data = self._path(sha256).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"signature file {sha256} is missing from {self.directory}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"signature file {sha256} in {self.directory} is damaged")
        return data

    def has(self, sha256: str) -> bool:
        return self._path(sha256).is_file()

    def prune(self, keep: Iterable[str]) -> int:
        """Remove the blobs not in ``keep`` (call only with every SHA-256 any committed source uses); the count."""
        wanted = set(keep)
        removed = 0
        if not self.directory.is_dir():
            return 0
        for path in self.directory.glob("??/*"):
            if _SHA256.fullmatch(path.name) and path.name not in wanted:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
