"""PDF documents, read with pikepdf (qpdf).

Every stream object is decoded (its filters applied) and yielded as ``obj<N>``, N being the object number;
embedded files are named by their file name instead. JavaScript held as a string in a ``/JS`` entry is
yielded as ``obj<N>/JS`` (JavaScript held in a stream is already that stream's member).

qpdf decodes a stream in one call, with no output limit, so the decoded size is bounded before decoding:
every PDF decode filter has a largest possible expansion, and a stream whose raw length times those factors
stays under the size limit is decoded directly. Otherwise a leading ``/FlateDecode`` layer is inflated here
with a hard cap to learn its real size, and the stream is refused when it could still exceed the limit.
Filters qpdf does not decode (images: DCT, JPX, JBIG2, CCITT) leave the raw stream data as the member.

An encrypted PDF is opened with the empty user password, as readers do; when that fails the document is
reported as encrypted.
"""

from __future__ import annotations

import io
import math
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

import pikepdf

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, ratio_exceeded, register

# Largest output/input ratio of each decode filter. Deflate tops out near 1032:1. An LZW string grows by one
# byte per code until the 4096-entry table fills, which bounds it near 1400:1; twice that is used for margin.
_EXPANSION = {
    "/FlateDecode": 1032,
    "/Fl": 1032,
    "/LZWDecode": 2800,
    "/LZW": 2800,
    "/RunLengthDecode": 64,
    "/RL": 64,
    "/ASCII85Decode": 4,
    "/A85": 4,
    "/ASCIIHexDecode": 1,
    "/AHx": 1,
}
_FLATE = ("/FlateDecode", "/Fl")
_MAX_WALK = 10_000  # direct objects visited per indirect object while looking for /JS


def _label(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace") or "(unnamed)"


@register(FileType.PDF)
def unpack_pdf(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pdf = pikepdf.open(io.BytesIO(data), password="")
        except pikepdf.PasswordError:
            pdf = None
        except Exception as exc:  # qpdf reports damage as PdfError, but hostile input reaches other paths
            raise UnpackError(f"corrupt PDF: {exc}") from None
    if pdf is None:
        yield Member("pdf-content", encrypted=True, skipped="encrypted PDF; the empty password does not open it")
        return
    with pdf:
        try:
            objects = list(pdf.objects)
        except Exception as exc:
            raise UnpackError(f"corrupt PDF: {exc}") from None
        embedded = _embedded_names(objects)
        for obj in objects:
            if ctx.expired():
                yield Member("pdf-content", skipped="scan time limit reached", limit="max_scan_time")
                return
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = _members_of(obj, embedded, ctx)
            yield from found


def _members_of(obj: Any, embedded: dict[tuple[int, int], str], ctx: UnpackContext) -> list[Member]:
    try:
        number = obj.objgen[0]
        members = []
        if isinstance(obj, pikepdf.Stream):
            name = embedded.get(obj.objgen) or f"obj{number}"
            members.append(_decode(obj, name, ctx))
        members.extend(_javascript(obj, number, ctx))
        return members
    except Exception as exc:  # one damaged object must not lose the others
        return [Member(f"obj{getattr(obj, 'objgen', ('?',))[0]}", skipped=f"corrupt object: {exc}")]


def _filters(stream: Any) -> list[str]:
    value = stream.get("/Filter")
    if value is None:
        return []
    if isinstance(value, pikepdf.Array):
        return [str(v) for v in value]
    return [str(value)]


def _bound(length: int, filters: list[str]) -> int:
    return length * math.prod(_EXPANSION.get(f, 1) for f in filters)


def _decode(stream: Any, name: str, ctx: UnpackContext) -> Member:
    raw = stream.read_raw_bytes()
    filters = _filters(stream)
    cap = ctx.max_member_size
    if _bound(len(raw), filters) > cap:
        if not filters or filters[0] not in _FLATE:
            return ctx.too_large(name)
        try:
            inflated = zlib.decompressobj().decompress(raw, cap + 1)
        except zlib.error as exc:
            return Member(name, skipped=f"corrupt stream: {exc}")
        if len(inflated) > cap:
            return ctx.too_large(name)
        if _bound(len(inflated), filters[1:]) > cap:
            return ctx.too_large(name)
    try:
        decoded = stream.read_bytes()
    except pikepdf.PdfError:
        decoded = raw  # a filter qpdf does not decode (image codecs): scan the raw bytes
    if len(decoded) > cap:
        return ctx.too_large(name)
    if ratio_exceeded(ctx.limits, len(decoded), len(raw)):
        return Member(name, skipped="compression ratio over the limit", limit="max_ratio")
    return Member(name, data=bytes(decoded))


def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
        for key in obj.keys():  # noqa: SIM118 (pikepdf objects iterate differently)
            yield obj.get(key)
    elif isinstance(obj, pikepdf.Array):
        yield from obj


def _javascript(obj: Any, number: int, ctx: UnpackContext) -> list[Member]:
    """String ``/JS`` values inside one indirect object, including its direct sub-dictionaries."""
    found: list[Member] = []
    stack = [obj]
    visited = 0
    while stack and visited < _MAX_WALK:
        node = stack.pop()
        visited += 1
        if isinstance(node, pikepdf.Dictionary | pikepdf.Stream):
            script = node.get("/JS")
            if isinstance(script, pikepdf.String):
                code = bytes(script)
                name = f"obj{number}/JS" if not found else f"obj{number}/JS{len(found) + 1}"
                if len(code) > ctx.max_member_size:
                    found.append(ctx.too_large(name))
                else:
                    found.append(Member(name, data=code))
        for child in _children(node):
            if isinstance(child, pikepdf.Dictionary | pikepdf.Array) and not child.is_indirect:
                stack.append(child)
    return found


def _embedded_names(objects: list[Any]) -> dict[tuple[int, int], str]:
    """Embedded file streams, by object id, mapped to the file name their file specification gives."""
    names: dict[tuple[int, int], str] = {}
    for obj in objects:
        try:
            if not isinstance(obj, pikepdf.Dictionary) or "/EF" not in obj:
                continue
            label = obj.get("/UF") or obj.get("/F")
            ef = obj.get("/EF")
            if label is None or not isinstance(ef, pikepdf.Dictionary):
                continue
            for key in ("/UF", "/F"):
                stream = ef.get(key)
                if isinstance(stream, pikepdf.Stream) and stream.is_indirect:
                    names.setdefault(stream.objgen, _label(str(label)))
        except Exception:  # a damaged file specification only loses the nicer name  # noqa: S112
            continue
    return names
