"""Release bundles: the set of signature files Garrison's server publishes and agents install, and deltas.

A bundle is a mapping ``{file name: content}`` of flat names (``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``). Line-set
formats (hash, body and logical signatures, allow and ignore lists) mean the same whatever their line order, so
:func:`canonical` sorts and deduplicates their lines; two releases with the same signatures then have the same
bytes, :func:`digest` names a release's content, and a delta between releases is two sets of lines per file
(removed, added) instead of a positional patch, which stays small however the lines moved.

The delta format (gzip-compressed, version 1)::

    GARRISON-DELTA 1\\n
    base <sha256 of pack(old)>\\n
    target <sha256 of pack(new)>\\n
    lines <name> <bytes> <sha256 of the new file>\\n<changed lines>
    file <name> <length> <sha256>\\n<content>
    remove <name>\\n
    end\\n

Sections come in name order. A ``lines`` block holds the removed and the added lines, each written ``-line\\n`` or
``+line\\n``, merged in the order of the lines themselves: a signature that changed only its name (same digest and
size) is removed and added on neighbouring lines, which gzip stores almost for free (in two separate blocks the
pair is too far apart for gzip's window; ClamAV's cdiff gets the same effect from its XCHG lines). Its byte
length frames the block, so a line may hold any byte but ``\\n``. ``file`` carries the whole new content of any
other file, length-prefixed. Applying checks the base digest first and every file's digest and the target
digest last, so a delta for another base, a tampered or truncated delta all fail with DatabaseError.

This module is pure: bytes in, bytes out, no file system, network or logging.
"""

from __future__ import annotations

import gzip
import hashlib
import heapq
import io
import re
import tarfile
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

from garrison.engine.errors import DatabaseError
from garrison.engine.signatures.cvd import gunzip_bounded

__all__ = [
    "LINE_SET_EXTENSIONS",
    "BundleLimits",
    "apply_delta",
    "canonical",
    "compress",
    "decompress",
    "digest",
    "is_line_set",
    "make_delta",
    "pack",
    "unpack",
]

MiB = 1024 * 1024
GiB = 1024 * MiB

#: Formats whose meaning does not depend on line order or repeated lines.
LINE_SET_EXTENSIONS = frozenset(
    {".hdb", ".hsb", ".hdu", ".hsu", ".ndb", ".ldb", ".ndu", ".ldu", ".fp", ".sfp", ".ign", ".ign2", ".txt"}
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MAGIC = b"GARRISON-DELTA 1\n"
_HEX64 = re.compile(rb"[0-9a-f]{64}")
_NUMBER = re.compile(rb"0|[1-9][0-9]{0,15}")


@dataclass(frozen=True, slots=True)
class BundleLimits:
    """Bounds on what unpacking a bundle or applying a delta may produce (the input can be hostile).

    Attributes:
        max_members: number of files in a bundle.
        max_total_size: bytes of all files together; also bounds decompressed tar archives and deltas.
    """

    max_members: int = 10_000
    max_total_size: int = 2 * GiB

    def __post_init__(self) -> None:
        if self.max_members <= 0 or self.max_total_size <= 0:
            raise ValueError("BundleLimits values must be positive")


def _error(what: str) -> DatabaseError:
    return DatabaseError(f"bundle: {what}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _error(f"refused file name {name!r:.80} (letters, digits, '.', '_', '-'; no separators)")


def is_line_set(name: str) -> bool:
    """Whether a file's lines form a set (its extension is in :data:`LINE_SET_EXTENSIONS`)."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in LINE_SET_EXTENSIONS


def _canonical_lines(content: bytes, name: str) -> list[bytes]:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(f"{name}: not UTF-8 text (byte {exc.start})") from None
    lines = content.split(b"\n")
    if b"\r" in content:
        lines = [line.rstrip(b"\r") for line in lines]
    lines = [line for line in lines if line]
    lines.sort()  # near-linear on the usual, already sorted input
    return [line for i, line in enumerate(lines) if i == 0 or line != lines[i - 1]]


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n" if lines else b""


def canonical(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """The canonical form of a bundle: line-set files sorted and deduplicated, other files unchanged.

    Line-set files must be UTF-8; their lines lose a trailing ``\\r``, empty and repeated lines are dropped, the
    rest are sorted bytewise and each ends with ``\\n``. Canonical bundles compare, digest and delta by content.

    Raises:
        DatabaseError: a refused file name, or a line-set file that is not UTF-8 (the message names it).
    """
    result: dict[str, bytes] = {}
    for name in sorted(files):
        _check_name(name)
        content = bytes(files[name])
        result[name] = _join(_canonical_lines(content, name)) if is_line_set(name) else content
    return result


# ------------------------------------------------------------------------------------------------------------
# Archive


def pack(files: Mapping[str, bytes]) -> bytes:
    """A deterministic uncompressed tar of the bundle: names sorted, mtime 0, owner 0, mode 0644, files only.

    The same bundle gives the same bytes on every machine, so :func:`digest` can name it.

    Raises:
        DatabaseError: a refused file name.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            _check_name(name)
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def unpack(data: bytes, limits: BundleLimits | None = None) -> dict[str, bytes]:
    """Read a bundle tar strictly: regular files with valid names only, within ``limits``.

    Raises:
        DatabaseError: not a tar archive, truncated, a link, device, directory or other non-file member, a
            refused or repeated name, too many members or too many bytes.
    """
    limits = limits or BundleLimits()
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                    raise _error(f"member {member.name!r:.80} is not a regular file (links, devices, directories "
                                 "and sparse files are refused)")  # fmt: skip
                _check_name(member.name)
                if member.name in files:
                    raise _error(f"member {member.name!r} appears twice")
                if len(files) >= limits.max_members:
                    raise _error(f"more than {limits.max_members} members")
                total += member.size
                if total > limits.max_total_size:
                    raise _error(f"members exceed {limits.max_total_size} bytes")
                extracted = archive.extractfile(member)
                content = extracted.read() if extracted is not None else b""
                if len(content) != member.size:
                    raise _error(f"member {member.name!r} is truncated")
                files[member.name] = content
    except tarfile.TarError as exc:
        raise _error(f"not a valid tar archive ({exc})") from None
    except (OSError, EOFError, ValueError, UnicodeError) as exc:
        raise _error(f"corrupt tar archive ({exc})") from None
    return files


def compress(data: bytes) -> bytes:
    """gzip with mtime 0 and no file name, so the same input always gives the same bytes."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def decompress(data: bytes, max_size: int) -> bytes:
    """Decompress gzip data, refusing more than ``max_size`` bytes of output (checked while decompressing).

    Raises:
        DatabaseError: not gzip, truncated, trailing garbage, or more than ``max_size`` bytes.
    """
    return gunzip_bounded(data, "bundle", max_size)


def digest(files: Mapping[str, bytes]) -> str:
    """The identity of a release's content: the SHA-256 (hex) of :func:`pack` of the bundle."""
    return hashlib.sha256(pack(files)).hexdigest()


# ------------------------------------------------------------------------------------------------------------
# Deltas


def _sorted_difference(left: list[bytes], right: list[bytes]) -> list[bytes]:
    """Lines of sorted ``left`` missing from sorted ``right``, in order (sets do the work in C)."""
    present = set(right)
    return [line for line in left if line not in present]


def _block(lines: Iterable[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def make_delta(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> bytes:
    """A compressed delta turning bundle ``old`` into bundle ``new`` (both are made canonical first).

    Line-set files carry the removed and the added lines; other changed files their whole new content; removed
    files their name. The work is linear in the bundles' size and the delta about the size of the changed
    lines, compressed.

    Raises:
        DatabaseError: a refused name or a line-set file that is not UTF-8 (see :func:`canonical`).
    """
    before, after = canonical(old), canonical(new)
    out = [_MAGIC, b"base %s\n" % digest(before).encode(), b"target %s\n" % digest(after).encode()]
    for name in sorted(set(before) | set(after)):
        encoded = name.encode("ascii")
        if name not in after:
            out.append(b"remove %s\n" % encoded)
            continue
        content = after[name]
        if before.get(name) == content:
            continue
        file_digest = hashlib.sha256(content).hexdigest().encode()
        if is_line_set(name):
            old_lines = before.get(name, b"").split(b"\n")[:-1]
            new_lines = content.split(b"\n")[:-1]
            removed = [b"-" + line for line in _sorted_difference(old_lines, new_lines)]
            added = [b"+" + line for line in _sorted_difference(new_lines, old_lines)]
            block = _block(heapq.merge(removed, added, key=lambda tagged: tagged[1:]))
            out += [b"lines %s %d %s\n" % (encoded, len(block), file_digest), block]
        else:
            out += [b"file %s %d %s\n" % (encoded, len(content), file_digest), content]
    out.append(b"end\n")
    return compress(b"".join(out))


class _Reader:
    """Reads the decompressed delta: header lines and length-framed blocks, never past the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def line(self) -> bytes:
        end = self.data.find(b"\n", self.at, self.at + 512)
        if end < 0:
            raise _error("corrupt delta: truncated or overlong header line")
        line = self.data[self.at : end]
        self.at = end + 1
        return line

    def block(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise _error("corrupt delta: truncated")
        block = self.data[self.at : self.at + size]
        self.at += size
        return block


def _number(value: bytes) -> int:
    if not _NUMBER.fullmatch(value):
        raise _error(f"corrupt delta: {value[:20]!r} is not a length")
    return int(value)


def _changed_lines(block: bytes, name: str) -> tuple[list[bytes], list[bytes]]:
    """The removed and the added lines of a ``lines`` block, each list checked canonical."""
    if not block:
        return [], []
    if not block.endswith(b"\n"):
        raise _error(f"corrupt delta: the changed lines of {name} do not end with a newline")
    tagged = block.split(b"\n")
    tagged.pop()
    removed = [line[1:] for line in tagged if line[:1] == b"-"]
    added = [line[1:] for line in tagged if line[:1] == b"+"]
    if len(removed) + len(added) != len(tagged):
        raise _error(f"corrupt delta: a changed line of {name} is neither removed (-) nor added (+)")
    for lines in (removed, added):
        if any(not line or line.endswith(b"\r") for line in lines) or any(a >= b for a, b in pairwise(lines)):
            raise _error(f"corrupt delta: the changed lines of {name} are not canonical (sorted, unique, non-empty)")
    return removed, added


def _apply_lines(current: bytes, removed: list[bytes], added: list[bytes], name: str) -> bytes:
    """Remove then add sorted lines in a sorted file, with binary searches: linear copying, no hashing."""
    lines = current.split(b"\n")
    lines.pop()
    kept: list[bytes] = []
    start = 0
    for line in removed:
        at = bisect_left(lines, line, start)
        if at == len(lines) or lines[at] != line:
            raise _error(f"delta does not apply: {name} has no line {line[:60]!r} to remove (wrong base?)")
        kept += lines[start:at]
        start = at + 1
    kept += lines[start:]
    result: list[bytes] = []
    start = 0
    for line in added:
        at = bisect_left(kept, line, start)
        if at < len(kept) and kept[at] == line:
            raise _error(f"delta does not apply: {name} already has the line {line[:60]!r} (wrong base?)")
        result += kept[start:at]
        result.append(line)
        start = at
    result += kept[start:]
    return _join(result)


def apply_delta(old: Mapping[str, bytes], delta: bytes, limits: BundleLimits | None = None) -> dict[str, bytes]:
    """Apply a delta from :func:`make_delta` to the canonical bundle it was made from.

    Args:
        old: the installed bundle, exactly as published (canonical); its digest must be the delta's base.
        delta: the compressed delta.
        limits: bounds on the decompressed delta and the resulting bundle.

    Returns:
        The new bundle; its digest is the delta's target.

    Raises:
        DatabaseError: the base digest differs (a delta for another release), a line to remove is missing or a
            line to add already present, a file's or the result's digest differs, the delta is corrupt,
            truncated or too large, or the result exceeds ``limits``.
    """
    limits = limits or BundleLimits()
    reader = _Reader(decompress(delta, limits.max_total_size))
    if reader.block(len(_MAGIC)) != _MAGIC:
        raise _error("corrupt delta: it does not start with 'GARRISON-DELTA 1'")
    base, target = reader.line().split(b" "), reader.line().split(b" ")
    if len(base) != 2 or base[0] != b"base" or not _HEX64.fullmatch(base[1]):
        raise _error("corrupt delta: bad base line")
    if len(target) != 2 or target[0] != b"target" or not _HEX64.fullmatch(target[1]):
        raise _error("corrupt delta: bad target line")
    have = digest(old)
    if have != base[1].decode():
        raise _error(f"delta does not apply: it is for base {base[1].decode()[:16]}…, the bundle is {have[:16]}…")

    result = dict(old)
    seen: set[str] = set()
    previous = ""
    while True:
        fields = reader.line().split(b" ")
        if fields == [b"end"]:
            break
        if len(fields) < 2:
            raise _error(f"corrupt delta: bad section line {b' '.join(fields)[:60]!r}")
        name = fields[1].decode("ascii", "replace")
        _check_name(name)
        if name in seen or name < previous:
            raise _error(f"corrupt delta: section {name!r} is out of order or repeated")
        seen.add(name)
        previous = name
        if fields[0] == b"remove" and len(fields) == 2:
            if result.pop(name, None) is None:
                raise _error(f"delta does not apply: {name} to remove is not in the bundle (wrong base?)")
            continue
        if fields[0] == b"lines" and len(fields) == 4 and _HEX64.fullmatch(fields[3]):
            if not is_line_set(name):
                raise _error(f"corrupt delta: {name} is not a line-set file")
            removed, added = _changed_lines(reader.block(_number(fields[2])), name)
            content = _apply_lines(result.get(name, b""), removed, added, name)
        elif fields[0] == b"file" and len(fields) == 4 and _HEX64.fullmatch(fields[3]):
            content = reader.block(_number(fields[2]))
        else:
            raise _error(f"corrupt delta: bad section line {b' '.join(fields)[:60]!r}")
        if hashlib.sha256(content).hexdigest().encode() != fields[-1]:
            raise _error(f"delta does not apply: {name} does not match its digest after the change (wrong base?)")
        result[name] = content
    if reader.at != len(reader.data):
        raise _error("corrupt delta: data after the end")
    if len(result) > limits.max_members or sum(map(len, result.values())) > limits.max_total_size:
        raise _error("the new bundle exceeds the limits")
    if digest(result) != target[1].decode():
        raise _error("delta does not apply: the result does not match the target digest")
    return result
