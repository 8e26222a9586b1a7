"""OLE2 compound files (Word .doc, Excel .xls, PowerPoint .ppt, vbaProject.bin, MSI...), read with olefile.

Every stream is a member named by its storage path (``WordDocument``, ``Macros/VBA/dir``). On top of the raw
streams, the VBA macro source code is decompressed with oletools' olevba and yielded as ``VBA/<module>``
members typed :attr:`FileType.VBA`, so that macro signatures see source text rather than compressed bytes.
An OOXML document's ``vbaProject.bin`` is itself OLE2, so the same code handles ``.docm``/``.xlsm`` after the
zip unpacker has extracted it.

Encrypted documents (an ``EncryptedPackage`` stream, or a legacy RC4-encrypted .doc/.xls) are reported with
an encrypted member; no password is tried. Nothing is written to disk and stream names are only labels.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import olefile

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, read_bounded, register

# olevba's import calls pyparsing APIs that warn about their own deprecation.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from oletools import crypto as oletools_crypto
    from oletools.olevba import VBA_Parser

T = TypeVar("T")

# Streams that hold an encrypted OOXML package (MS-OFFCRYPTO 2.3.4).
_ENCRYPTED_PACKAGE = "encryptedpackage"


def _quietly(func: Callable[[], T]) -> T:
    """Run a library call with its warnings silenced: oletools and olefile warn freely on malformed input."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func()


def _label(parts: list[str]) -> str:
    name = "/".join(parts)
    return name.encode("utf-8", "surrogatepass").decode("utf-8", "replace") or "(unnamed)"


@register(FileType.OLE2)
def unpack_ole2(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    try:
        ole = _quietly(lambda: olefile.OleFileIO(io.BytesIO(data)))
        paths: list[list[str]] = _quietly(lambda: ole.listdir(streams=True, storages=False))
    except Exception as exc:  # olefile raises anything from struct.error to IndexError on hostile input
        raise UnpackError(f"corrupt OLE2 file: {exc}") from None
    try:
        yield from _streams(ole, paths, ctx)
        if _quietly(lambda: _is_encrypted(ole, paths)):
            yield Member("encrypted-document", encrypted=True, skipped="password-protected document")
    finally:
        ole.close()
    yield from _macros(data, ctx)


def _streams(ole: Any, paths: list[list[str]], ctx: UnpackContext) -> Iterator[Member]:
    for parts in paths:
        if ctx.expired():
            yield Member(_label(parts), skipped="scan time limit reached", limit="max_scan_time")
            return
        name = _label(parts)
        if parts[-1].lower() == _ENCRYPTED_PACKAGE:
            yield Member(name, encrypted=True, skipped="encrypted OOXML package")
            continue
        yield _quietly(functools.partial(_read_stream, ole, parts, name, ctx))


def _read_stream(ole: Any, parts: list[str], name: str, ctx: UnpackContext) -> Member:
    try:
        refused = ctx.refuse(name, ole.get_size(parts))
        if refused is not None:
            return refused
        return read_bounded(ole.openstream(parts), ctx, name)
    except Exception as exc:  # a broken sector chain in one stream must not lose the others
        return Member(name, skipped=f"corrupt stream: {exc}")


def _is_encrypted(ole: Any, paths: list[list[str]]) -> bool:
    if any(parts[-1].lower() == _ENCRYPTED_PACKAGE for parts in paths):
        return False  # already reported on the stream itself
    try:
        return bool(oletools_crypto.is_encrypted(ole))
    except Exception:  # encryption sniffing is best effort
        return False


def _macros(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    """VBA source of every module, as olevba decompresses it."""
    try:
        parser = _quietly(lambda: VBA_Parser("ole2", data=data, relaxed=True))
    except Exception:  # not a document olevba understands: the raw streams were still yielded
        return
    try:
        if not _quietly(parser.detect_vba_macros):
            return
        macros = _quietly(lambda: list(parser.extract_macros()))
    except Exception as exc:
        yield Member("VBA", skipped=f"VBA project could not be decompressed: {exc}")
        return
    finally:
        _quietly(parser.close)
    for _subfile, stream_path, vba_filename, code in macros:
        module = str(stream_path or vba_filename or "module").rsplit("/", 1)[-1]
        name = f"VBA/{module}".encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        source = code.encode("utf-8", "replace") if isinstance(code, str) else bytes(code or b"")
        if len(source) > ctx.max_member_size:
            yield ctx.too_large(name)
            continue
        yield Member(name, data=source, file_type=FileType.VBA)
