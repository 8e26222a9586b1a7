"""7-Zip archives, read with py7zr.

py7zr's public extraction API turns member names into output paths and refuses the whole archive when one
name would escape the target directory, which is exactly the kind of archive a scanner must still read. So
this module hands py7zr's worker one in-memory sink per member, keyed by the member's index, and member names
are never used as paths. Each sink keeps at most ``max_member_size + 1`` bytes.

Members of encrypted folders are reported as encrypted (no password is tried); an archive whose header is
encrypted cannot even be listed and yields one encrypted placeholder member.
"""

from __future__ import annotations

import io
import lzma
import zlib
from collections.abc import Iterator
from typing import Any

import py7zr
from py7zr.compressor import SupportedMethods
from py7zr.io import MemIO, Py7zIO, WriterFactory

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, ratio_exceeded, register

# py7zr raises its own errors, but its decoders also leak the underlying libraries' exceptions.
_ERRORS = (
    py7zr.exceptions.ArchiveError,
    py7zr.exceptions.PasswordRequired,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    lzma.LZMAError,
    zlib.error,
    MemoryError,
)


class _TimeUp(Exception):
    """Raised from a sink to stop py7zr's extraction when the scan deadline passes."""


class _Sink(Py7zIO):
    """Collects one member, keeping no more than one byte past the size limit."""

    def __init__(self, ctx: UnpackContext, crc: int | None) -> None:
        self._ctx = ctx
        self._chunks: list[bytes] = []
        self._expected_crc = crc
        self._crc = 0
        self._closed = False
        self._kept = 0
        self.total = 0

    def write(self, s: bytes | bytearray) -> int:
        if self._ctx.expired():
            raise _TimeUp
        room = self._ctx.max_member_size + 1 - self._kept
        if room > 0:
            self._chunks.append(bytes(s[:room]))
            self._kept += len(self._chunks[-1])
        self.total += len(s)
        self._crc = zlib.crc32(s, self._crc)
        return len(s)

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def flush(self) -> None:
        return None

    def size(self) -> int:
        return self.total

    def close(self) -> None:
        self._closed = True

    @property
    def finished(self) -> bool:
        """The member was written to its end and its checksum (when the archive has one) matches."""
        return self._closed and (self._expected_crc is None or self._expected_crc == self._crc)

    def data(self) -> bytes:
        return b"".join(self._chunks)


class _Factory(WriterFactory):
    def __init__(self, sinks: dict[str, _Sink]) -> None:
        self._sinks = sinks

    def create(self, filename: str) -> Py7zIO:
        return self._sinks[filename]


def _label(name: Any) -> str:
    text = str(name) if name is not None else ""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace") or "(unnamed)"


def _folder_sizes(files: Any) -> dict[int, int]:
    """Declared uncompressed bytes per folder (solid block), to judge its compression ratio as a whole."""
    sizes: dict[int, int] = {}
    for f in files:
        if f.folder is not None and not f.emptystream:
            sizes[id(f.folder)] = sizes.get(id(f.folder), 0) + (f.uncompressed or 0)
    return sizes


@register(FileType.SEVENZIP)
def unpack_7z(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    try:
        archive = py7zr.SevenZipFile(io.BytesIO(data), mode="r")
    except py7zr.exceptions.PasswordRequired:
        yield Member("7z-header", encrypted=True, skipped="encrypted archive header")
        return
    except _ERRORS as exc:
        raise UnpackError(f"corrupt 7z archive: {exc}") from None

    with archive:
        files = list(archive.files)
        folder_sizes = _folder_sizes(files)
        sinks: dict[str, _Sink] = {}
        pending: list[tuple[str, _Sink]] = []
        for f in files:
            name = _label(f.filename)
            if f.is_directory:
                continue
            if f.is_symlink or f.is_junction or f.is_socket:
                yield Member(name, skipped="link or special file not extracted")
                continue
            if f.emptystream:
                yield Member(name, data=b"")
                continue
            try:
                encrypted = SupportedMethods.needs_password(f.folder.coders)
            except _ERRORS:
                encrypted = False
            if encrypted:
                yield Member(name, encrypted=True, skipped="encrypted member")
                continue
            refused = ctx.refuse(name, f.uncompressed)
            if refused is None and ratio_exceeded(ctx.limits, folder_sizes.get(id(f.folder)), len(data)):
                refused = Member(name, skipped="compression ratio over the limit", limit="max_ratio")
            if refused is not None:
                yield refused
                continue
            key = str(f.id)
            sinks[key] = _Sink(ctx, f.crc32)
            pending.append((name, sinks[key]))
            archive.worker.register_filelike(f.id, MemIO(key, _Factory(sinks)))

        if not pending:
            return
        failure: str | None = None
        try:
            archive.worker.extract(archive.fp, None, parallel=False)
        except _TimeUp:
            failure = "time"
        except _ERRORS as exc:
            failure = f"corrupt member: {exc}"

    for name, sink in pending:
        if failure == "time" and not sink.finished:
            yield Member(name, skipped="scan time limit reached", limit="max_scan_time")
        elif not sink.finished:
            yield Member(name, skipped=failure or "corrupt member: checksum mismatch")
        elif sink.total > ctx.max_member_size:
            yield ctx.too_large(name)
        else:
            yield Member(name, data=sink.data())
