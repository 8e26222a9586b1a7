"""The unpacker registry: which function opens which container type, and the rules every unpacker follows.

An unpacker is a generator ``unpack(data, ctx) -> Iterator[Member]``. It must:

- never decompress more than ``ctx.max_member_size`` bytes for one member (use :func:`read_bounded`), and
  yield a member with ``limit`` set instead of the data when a member is too large or expands too much;
- never write to disk, and never trust member names (they are only ever used as labels);
- raise :class:`~garrison.engine.errors.UnpackError` with a plain reason when the container is corrupt.
  Anything else it raises is also caught by the scanner and turned into an "incomplete" result, but a clear
  reason is better.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Protocol

from garrison.engine.filetype import FileType
from garrison.engine.limits import ScanLimits

# Members smaller than this are never refused for their compression ratio: tiny highly compressible files
# (a page of spaces) are common and harmless.
RATIO_FLOOR = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Member:
    """One object inside a container.

    Attributes:
        name: the member's name inside its container (any string; used only as a label).
        data: the extracted bytes, or None when the member was not extracted.
        encrypted: the member is encrypted and could not be read.
        skipped: why the member was not extracted, in plain words (set when ``data`` is None).
        limit: the :class:`ScanLimits` field that stopped extraction, if a limit did.
        file_type: a type the unpacker knows better than content typing would (VBA source, for example).
        normalized: this is not a member but a normalised view of the container itself (HTML or text
            lowercased, whitespace collapsed), matched only by signatures written for normalised content.
    """

    name: str
    data: bytes | None = None
    encrypted: bool = False
    skipped: str | None = None
    limit: str | None = None
    file_type: FileType | None = None
    normalized: bool = False


class UnpackContext:
    """What an unpacker may spend on one container."""

    def __init__(
        self, limits: ScanLimits, max_member_size: int, deadline: float, *, normalize: bool = True, name: str = ""
    ) -> None:
        self.limits = limits
        # The container's own name (last link of its chain), for formats that name their content after it.
        self.name = name
        self.max_member_size = max_member_size
        self.deadline = deadline
        # False when no loaded signature targets normalised content: unpackers then skip building views.
        self.normalize = normalize
        # Which limit max_member_size stands for: the per-object size, or what is left of the scan budget.
        self.size_limit = "max_file_size"

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def too_large(self, name: str, size: int | None = None) -> Member:
        """The member to yield for one that is (or expands) over the size allowed."""
        if self.size_limit == "max_scan_size":
            return Member(name, skipped="scan size limit reached", limit="max_scan_size")
        what = f"member of {size} bytes" if size is not None else "member"
        return Member(name, skipped=f"{what} is over the size limit", limit="max_file_size")

    def refuse(self, name: str, size: int | None, compressed: int | None = None) -> Member | None:
        """A member to yield instead of extracting, when its declared sizes already break a limit."""
        if size is not None and size > self.max_member_size:
            return self.too_large(name, size)
        if ratio_exceeded(self.limits, size, compressed):
            return Member(name, skipped="compression ratio over the limit", limit="max_ratio")
        return None


def ratio_exceeded(limits: ScanLimits, size: int | None, compressed: int | None) -> bool:
    if not limits.max_ratio or size is None or compressed is None or size <= RATIO_FLOOR:
        return False
    return size > limits.max_ratio * max(compressed, 1)


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def read_bounded(stream: _Readable | IO[bytes], ctx: UnpackContext, name: str, compressed: int | None = None) -> Member:
    """Read a member from a decompressing stream without ever holding more than the limit allows.

    Reads one byte past the limit to tell "exactly the limit" from "over it", so a bomb costs at most
    ``max_member_size + 1`` bytes of memory.
    """
    cap = ctx.max_member_size
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = stream.read(min(1024 * 1024, cap + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            return ctx.too_large(name)
        if ratio_exceeded(ctx.limits, total, compressed):
            return Member(name, skipped="compression ratio over the limit", limit="max_ratio")
        if ctx.expired():
            return Member(name, skipped="scan time limit reached", limit="max_scan_time")
    return Member(name, data=b"".join(chunks))


Unpacker = Callable[[bytes, UnpackContext], Iterator[Member]]

_REGISTRY: dict[FileType, Unpacker] = {}

#: Which module unpacks which type. Modules are imported on first use: some libraries they use (oletools,
#: py7zr, pikepdf) take tens of milliseconds to import, which every short ``garrison scan`` would pay.
MODULES: dict[FileType, str] = {
    FileType.ZIP: "zipfiles",
    FileType.GZ: "compressed",
    FileType.BZ: "compressed",
    FileType.XZ: "compressed",
    FileType.TAR: "tarfiles",
    FileType.SEVENZIP: "sevenzip",
    FileType.CPIO: "libarchive_formats",
    FileType.CAB: "libarchive_formats",
    FileType.RAR: "libarchive_formats",
    FileType.ISO: "libarchive_formats",
    FileType.AR: "libarchive_formats",
    FileType.OLE2: "ole2",
    FileType.PDF: "pdf",
    FileType.MAIL: "mail",
    FileType.RTF: "rtf",
    FileType.HTML: "html",
    FileType.TEXT: "text",
}


def register(*file_types: FileType) -> Callable[[Unpacker], Unpacker]:
    """Declare the decorated function as the unpacker for these types."""

    def decorate(func: Unpacker) -> Unpacker:
        for file_type in file_types:
            if file_type in _REGISTRY:
                raise RuntimeError(f"two unpackers for {file_type}")
            _REGISTRY[file_type] = func
        return func

    return decorate


def unpacker_for(file_type: FileType) -> Unpacker | None:
    """The unpacker for a type, or None when objects of that type are scanned as they are."""
    found = _REGISTRY.get(file_type)
    if found is None and file_type in MODULES:
        importlib.import_module(f"{__package__}.{MODULES[file_type]}")
        found = _REGISTRY.get(file_type)
    return found
