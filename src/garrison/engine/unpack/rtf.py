"""RTF documents: the OLE objects embedded in ``\\objdata`` groups, found with oletools' rtfobj.

Each object is a member ``object<N>``: the native data of an OLE 1.0 object when it parses as one (often an
OLE2 file, which the scanner unpacks in turn), otherwise the raw bytes decoded from the hex. An OLE
"Package" object also yields the packaged file under the file name the package records. rtfobj reproduces
Word's own quirks when decoding the hex (stray characters, odd digit counts), which is what exploits rely on.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType
from garrison.engine.unpack.registry import Member, UnpackContext, register

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from oletools.rtfobj import RtfObjParser


def _label(name: Any) -> str:
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    text = str(name or "").strip()
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _bounded(name: str, payload: bytes, ctx: UnpackContext) -> Member:
    if len(payload) > ctx.max_member_size:
        return ctx.too_large(name, len(payload))
    return Member(name, data=bytes(payload))


@register(FileType.RTF)
def unpack_rtf(data: bytes, ctx: UnpackContext) -> Iterator[Member]:
    parser = RtfObjParser(data)
    failure: str | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser.parse()
    except Exception as exc:  # rtfobj is a hand-written parser: anything can come out of hostile input
        failure = f"malformed RTF: {exc}"
    for index, obj in enumerate(parser.objects, 1):
        name = f"object{index}"
        payload = obj.oledata if obj.is_ole and obj.oledata else obj.rawdata
        if payload is None:
            yield Member(name, skipped="object data could not be decoded")
            continue
        yield _bounded(name, payload, ctx)
        if obj.is_package and obj.olepkgdata is not None:
            yield _bounded(_label(obj.filename) or f"{name}/package", obj.olepkgdata, ctx)
    if failure is not None:
        raise UnpackError(failure)
