"""Hash signatures (``.hdb``, ``.hsb``) and hash allow-lists (``.fp``, ``.sfp``), stored compactly.

A Python ``set`` of a million digests costs about 900 MB, so digests live in sorted numpy arrays instead:
8-byte big-endian prefixes to search, full digests to confirm, sizes (-1 for ClamAV's ``*``), and names in
one byte blob. That is about 70 bytes per signature, the arrays can be saved as ``.npy`` files and memory
mapped by every scanning process at no cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from garrison.engine.errors import SignatureError
from garrison.engine.hashing import algorithm_for_hex

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
ANY_SIZE = -1
# ClamAV rejects unknown-size hashes that do not require at least this functionality level.
UNKNOWN_SIZE_MIN_FLEVEL = 73


@dataclass(frozen=True, slots=True)
class HashSignature:
    """One parsed hash signature line."""

    digest: bytes
    algorithm: str
    size: int
    name: str
    min_flevel: int
    max_flevel: int | None
    source: str
    line: int


def parse_hash_line(text: str, source: str, lineno: int) -> HashSignature:
    """Parse ``HashString:FileSize:MalwareName[:min_flevel[:max_flevel]]``."""
    fields = text.split(":")
    if len(fields) < 3 or len(fields) > 5:
        raise SignatureError(source, lineno, "expected HashString:FileSize:MalwareName[:MinFL[:MaxFL]]")
    hex_digest, size_text, name = fields[0], fields[1], fields[2]
    algorithm = algorithm_for_hex(hex_digest)
    if algorithm is None or not _HEX.match(hex_digest):
        raise SignatureError(source, lineno, f"{hex_digest[:70]!r} is not an MD5, SHA1 or SHA256 in hex")
    if not name or not _NAME.match(name):
        raise SignatureError(source, lineno, f"bad signature name {name[:80]!r}")
    min_flevel, max_flevel = _flevels(fields[3:], source, lineno)
    if size_text == "*":
        if min_flevel < UNKNOWN_SIZE_MIN_FLEVEL:
            raise SignatureError(source, lineno, "a '*' (unknown) size needs a minimum functionality level of 73")
        size = ANY_SIZE
    elif size_text.isdigit():
        size = int(size_text)
    else:
        raise SignatureError(source, lineno, f"file size {size_text[:40]!r} is not a number or '*'")
    return HashSignature(bytes.fromhex(hex_digest), algorithm, size, name, min_flevel, max_flevel, source, lineno)


def _flevels(fields: list[str], source: str, lineno: int) -> tuple[int, int | None]:
    try:
        min_flevel = int(fields[0]) if fields and fields[0] else 0
        max_flevel = int(fields[1]) if len(fields) > 1 and fields[1] else None
    except ValueError:
        raise SignatureError(source, lineno, "functionality levels must be numbers") from None
    return min_flevel, max_flevel


class HashTableBuilder:
    """Collects hash signatures, then freezes them into a :class:`HashTable`."""

    def __init__(self) -> None:
        self._rows: dict[str, list[tuple[bytes, int, int, int, int]]] = {"md5": [], "sha1": [], "sha256": []}
        self._names: dict[str, int] = {}
        self._sources: dict[str, int] = {}

    def add(self, sig: HashSignature) -> None:
        name_id = self._names.setdefault(sig.name, len(self._names))
        source_id = self._sources.setdefault(sig.source, len(self._sources))
        self._rows[sig.algorithm].append((sig.digest, sig.size, name_id, source_id, sig.line))

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._rows.values())

    def build(self) -> HashTable:
        arrays: dict[str, npt.NDArray[np.generic]] = {}
        for algorithm, rows in self._rows.items():
            width = {"md5": 16, "sha1": 20, "sha256": 32}[algorithm]
            digests = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.uint8).reshape(-1, width)
            keys = digests[:, :8].copy().view(">u8").ravel().astype(np.uint64)
            order = np.argsort(keys, kind="stable")
            arrays[f"{algorithm}_keys"] = keys[order]
            arrays[f"{algorithm}_digests"] = digests[order]
            arrays[f"{algorithm}_sizes"] = np.array([r[1] for r in rows], dtype=np.int64)[order]
            arrays[f"{algorithm}_names"] = np.array([r[2] for r in rows], dtype=np.uint32)[order]
            arrays[f"{algorithm}_sources"] = np.array([r[3] for r in rows], dtype=np.uint32)[order]
            arrays[f"{algorithm}_lines"] = np.array([r[4] for r in rows], dtype=np.uint32)[order]
            sizes = arrays[f"{algorithm}_sizes"]
            arrays[f"{algorithm}_size_index"] = np.unique(sizes[sizes != ANY_SIZE])
            arrays[f"{algorithm}_any_size"] = np.array([np.count_nonzero(sizes == ANY_SIZE)], dtype=np.int64)
        arrays["names_blob"], arrays["names_offsets"] = _pack_strings(list(self._names))
        arrays["sources_blob"], arrays["sources_offsets"] = _pack_strings(list(self._sources))
        return HashTable(arrays)


def _pack_strings(strings: list[str]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint64]]:
    encoded = [s.encode() for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.uint64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


@dataclass(frozen=True, slots=True)
class HashHit:
    """A hash signature that matched: its name and where it was written."""

    name: str
    source: str
    line: int


class HashTable:
    """Sorted, compact hash signatures; look-ups cost a binary search."""

    ARRAY_NAMES = (
        *(
            f"{a}_{part}"
            for a in ("md5", "sha1", "sha256")
            for part in ("keys", "digests", "sizes", "names", "sources", "lines", "size_index", "any_size")
        ),
        "names_blob",
        "names_offsets",
        "sources_blob",
        "sources_offsets",
    )

    def __init__(self, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
        self._a = arrays
        self.algorithms = tuple(a for a in ("md5", "sha1", "sha256") if len(arrays[f"{a}_keys"]))

    def __len__(self) -> int:
        return sum(len(self._a[f"{a}_keys"]) for a in ("md5", "sha1", "sha256"))

    def needs(self, algorithm: str, size: int) -> bool:
        """Whether an object of this size could match at all: most sizes have no signature, so no hashing.

        ClamAV's hash signatures carry the file size for this reason; only ``*`` (unknown size) signatures
        force every object to be hashed.
        """
        if int(self._a[f"{algorithm}_any_size"][0]):
            return True
        index = self._a[f"{algorithm}_size_index"]
        at = int(np.searchsorted(index, size))
        return at < len(index) and int(index[at]) == size

    def count(self, algorithm: str) -> int:
        return len(self._a[f"{algorithm}_keys"])

    def lookup(self, algorithm: str, digest: bytes, size: int) -> list[HashHit]:
        """Signatures for this digest whose size is ``size`` or unknown."""
        keys = self._a[f"{algorithm}_keys"]
        if not len(keys):
            return []
        key = np.uint64(int.from_bytes(digest[:8], "big"))
        lo = int(np.searchsorted(keys, key, side="left"))
        if lo >= len(keys) or keys[lo] != key:
            return []
        hi = int(np.searchsorted(keys, key, side="right"))
        digests, sizes = self._a[f"{algorithm}_digests"], self._a[f"{algorithm}_sizes"]
        hits = []
        for i in range(lo, hi):
            if digests[i].tobytes() == digest and sizes[i] in (size, ANY_SIZE):
                hits.append(
                    HashHit(
                        self._string("names", int(self._a[f"{algorithm}_names"][i])),
                        self._string("sources", int(self._a[f"{algorithm}_sources"][i])),
                        int(self._a[f"{algorithm}_lines"][i]),
                    )
                )
        return hits

    def _string(self, kind: str, index: int) -> str:
        offsets = self._a[f"{kind}_offsets"]
        start, end = int(offsets[index]), int(offsets[index + 1])
        return bytes(self._a[f"{kind}_blob"][start:end]).decode()

    def save(self, directory: Path, prefix: str) -> None:
        for name in self.ARRAY_NAMES:
            np.save(directory / f"{prefix}{name}.npy", self._a[name], allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, prefix: str) -> HashTable:
        """Memory-map a saved table: nothing is read until it is searched, and processes share the pages."""
        return cls(
            {
                name: np.load(directory / f"{prefix}{name}.npy", mmap_mode="r", allow_pickle=False)
                for name in cls.ARRAY_NAMES
            }
        )
