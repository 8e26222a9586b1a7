"""cpio, Microsoft cabinet, RAR (v4 and v5), ISO 9660 and ar archives, read with libarchive (libarchive-c).

libarchive reads each format with the reader named for the detected type only, and with no decompression
filters: a compressed cpio or ar is typed as gzip/bzip2/xz first, and libarchive's filter set includes
external programs (lrzip, lzop...) that a scanner must never start. Member data is pulled from libarchive in
chunks through :func:`read_bounded`, so a member never costs more than the size limit plus one byte.

Encrypted entries (RAR, and CAB/ISO never are) are reported as encrypted without trying any password.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from typing import Any

import libarchive
from libarchive import ffi
from libarchive.exception import ArchiveError

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, read_bounded, register

_ERRORS = (ArchiveError, OSError, ValueError, UnicodeError)

_is_encrypted: Any = getattr(ffi.libarchive, "archive_entry_is_encrypted", None)
if _is_encrypted is not None:
    _is_encrypted.argtypes = [ctypes.c_void_p]
    _is_encrypted.restype = ctypes.c_int


class _EntryStream:
    """The current entry's data as a ``read(n)`` stream, so :func:`read_bounded` can cap it."""

    def __init__(self, archive_p: Any) -> None:
        self._archive_p = archive_p
        self._buffer = ctypes.create_string_buffer(1024 * 1024)

    def read(self, n: int = -1, /) -> bytes:
        size = len(self._buffer) if n < 0 else min(n, len(self._buffer))
        got = ffi.read_data(self._archive_p, self._buffer, size)
        return self._buffer.raw[:got]


def _label(entry: Any) -> str:
    name = entry.pathname
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    if not name:
        return "(unnamed)"
    return str(name).encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _encrypted(entry: Any) -> bool:
    return _is_encrypted is not None and _is_encrypted(entry._entry_p) > 0


def _special(entry: Any) -> str | None:
    if entry.issym:
        return "symbolic link not extracted"
    if entry.islnk:
        return "hard link not extracted"
    if entry.isdev or entry.isfifo or entry.issock:
        return "device or special file not extracted"
    return None if entry.isreg else "not a regular file"


def _looks_encrypted(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "passphrase" in text or "encrypt" in text or "password" in text


def _unpack(data: bytes, ctx: UnpackContext, kind: str) -> Iterator[Member]:
    with contextlib.ExitStack() as stack:
        try:
            archive = stack.enter_context(libarchive.memory_reader(data, format_name=kind, filter_name="none"))
        except _ERRORS as exc:
            raise UnpackError(f"corrupt {kind} archive: {_reason(exc)}") from None
        yield from _members(archive, ctx, kind)


@register(FileType.CPIO)
def unpack_cpio(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    yield from _unpack(data, ctx, "cpio")


@register(FileType.CAB)
def unpack_cab(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    yield from _unpack(data, ctx, "cab")


@register(FileType.RAR)
def unpack_rar(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    # RAR 5 puts a version byte after the "Rar!\x1a\x07" signature both versions share.
    yield from _unpack(data, ctx, "rar5" if data[6:8] == b"\x01\x00" else "rar")


@register(FileType.ISO)
def unpack_iso(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    yield from _unpack(data, ctx, "iso9660")


@register(FileType.AR)
def unpack_ar(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    yield from _unpack(data, ctx, "ar")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ArchiveError):
        return str(exc.msg or "truncated or malformed data")
    return str(exc)


def _members(archive: Any, ctx: UnpackContext, kind: str) -> Iterator[Member]:
    entries = iter(archive)
    while True:
        try:
            entry = next(entries)
        except StopIteration:
            return
        except _ERRORS as exc:
            raise UnpackError(f"corrupt {kind} archive: {_reason(exc)}") from None
        if entry.isdir:
            continue
        name = _label(entry)
        reason = _special(entry)
        if reason is not None:
            yield Member(name, skipped=reason)
            continue
        if _encrypted(entry):
            yield Member(name, encrypted=True, skipped="encrypted member")
            continue
        refused = ctx.refuse(name, entry.size)
        if refused is not None:
            yield refused
            continue
        try:
            member = read_bounded(_EntryStream(archive._pointer), ctx, name)
        except _ERRORS as exc:
            if _looks_encrypted(exc):
                yield Member(name, encrypted=True, skipped="encrypted member")
            else:
                yield Member(name, skipped=f"corrupt member: {_reason(exc)}")
            continue
        yield member
