"""Single-stream compressors: gzip, bzip2 and xz. Each yields one member, named like the tools name it."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Iterator

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, read_bounded, register

_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


# How the command-line tools name what they decompress: the container's name without its suffix.
_SUFFIXES = {
    "gzip": {".gz": "", ".tgz": ".tar", ".z": ""},
    "bzip2": {".bz2": "", ".tbz2": ".tar", ".tbz": ".tar"},
    "xz": {".xz": "", ".txz": ".tar"},
}


def _content_name(container: str, kind: str) -> str:
    base = container.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    replacement = _SUFFIXES[kind].get(f".{suffix.lower()}") if dot else None
    if replacement is None or not stem:
        return f"{kind}-content"
    return stem + replacement


def _gzip_name(data: bytes, container: str) -> str:
    # FNAME flag (bit 3): the original file name follows the 10-byte header (after FEXTRA if present).
    if len(data) < 10 or not data[3] & 0x08:
        return _content_name(container, "gzip")
    pos = 10
    if data[3] & 0x04 and len(data) >= 12:
        pos += 2 + int.from_bytes(data[10:12], "little")
    end = data.find(b"\x00", pos, pos + 1024)
    if end <= pos:
        return _content_name(container, "gzip")
    return data[pos:end].decode("latin-1")


def _single(stream: io.BufferedIOBase, data: bytes, ctx: UnpackContext, name: str, kind: str) -> Iterator[Member]:
    try:
        member = read_bounded(stream, ctx, name, compressed=len(data))
    except _ERRORS as exc:
        raise UnpackError(f"corrupt {kind} stream: {exc}") from None
    yield member


@register(FileType.GZ)
def unpack_gzip(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        yield from _single(stream, data, ctx, _gzip_name(data, ctx.name), "gzip")


@register(FileType.BZ)
def unpack_bzip2(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    with bz2.BZ2File(io.BytesIO(data)) as stream:
        yield from _single(stream, data, ctx, _content_name(ctx.name, "bzip2"), "bzip2")


@register(FileType.XZ)
def unpack_xz(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    with lzma.LZMAFile(io.BytesIO(data)) as stream:
        yield from _single(stream, data, ctx, _content_name(ctx.name, "xz"), "xz")
