"""RTF: OLE objects in \\objdata, OLE packages by their file name, broken hex and unbalanced groups."""

from __future__ import annotations

import struct

import pytest

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType, detect
from garrison.engine.unpack.rtf import unpack_rtf

from .helpers import EICAR, HOSTILE_NAMES, build_cfb, by_name, make_ctx


def _lp(text: bytes) -> bytes:
    return struct.pack("<I", len(text) + 1) + text + b"\0"


def ole1(class_name: bytes, native: bytes) -> bytes:
    """An OLE 1.0 embedded object (MS-OLEDS 2.2.4/2.2.5)."""
    return (
        struct.pack("<II", 0x0501, 2) + _lp(class_name) + _lp(b"") + _lp(b"") + struct.pack("<I", len(native)) + native
    )


def package(name: str, data: bytes) -> bytes:
    """The native data of an OLE "Package" object carrying one file."""
    raw = name.encode("latin-1", "replace")
    path = b"C:\\Users\\x\\" + raw + b"\0"
    return (
        struct.pack("<H", 2)
        + raw
        + b"\0"
        + path
        + struct.pack("<II", 0x00030000, len(path))
        + path
        + struct.pack("<I", len(data))
        + data
    )


def rtf(*objects: bytes, hexify: bool = True) -> bytes:
    groups = b"".join(
        b"{\\object\\objemb{\\*\\objclass x}{\\*\\objdata " + (obj.hex().encode() if hexify else obj) + b"}}"
        for obj in objects
    )
    return b"{\\rtf1\\ansi{\\fonttbl{\\f0 Arial;}}Hello " + groups + b"}"


def test_package_and_embedded_ole2() -> None:
    document = build_cfb({"WordDocument": b"\xec\xa5" + b"\0" * 100})
    data = rtf(ole1(b"Package", package("invoice.exe", EICAR)), ole1(b"Word.Document.8", document))
    assert detect(data) is FileType.RTF
    members = by_name(unpack_rtf(data, make_ctx()))
    assert members["invoice.exe"].data == EICAR
    assert members["object1"].data is not None and EICAR in members["object1"].data
    assert members["object2"].data == document


def test_raw_object_that_is_not_ole1() -> None:
    members = list(unpack_rtf(rtf(EICAR), make_ctx()))
    assert [(m.name, m.data) for m in members] == [("object1", EICAR)]


def test_obfuscated_hex_is_decoded_like_word() -> None:
    # Whitespace and stray non-hex characters inside \objdata are ignored by Word, so by rtfobj too.
    spaced = b" \r\n".join(EICAR.hex().encode()[i : i + 7] for i in range(0, len(EICAR) * 2, 7))
    members = list(unpack_rtf(rtf(spaced, hexify=False), make_ctx()))
    assert members[0].data == EICAR


def test_oversized_object() -> None:
    members = by_name(
        unpack_rtf(rtf(b"B" * 6000, ole1(b"Package", package("e.com", EICAR))), make_ctx(max_member_size=4096))
    )
    assert members["object1"].limit == "max_file_size"
    assert members["e.com"].data == EICAR


# A package stores its file name NUL-terminated, so NUL cannot occur in one.
@pytest.mark.parametrize("name", [n for n in HOSTILE_NAMES if "\x00" not in n] + ["C:\\..\\evil.exe"])
def test_hostile_package_names(name: str) -> None:
    members = [m for m in unpack_rtf(rtf(ole1(b"Package", package(name, EICAR))), make_ctx()) if m.data == EICAR]
    assert len(members) == 1
    members[0].name.encode("utf-8")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"{\\rtf1" + b"{" * 5000 + b"\\objdata 4142", id="unbalanced"),
        pytest.param(b"{\\rtf1{\\object{\\*\\objdata zzzz}}}", id="no-hex"),
        pytest.param(
            b"{\\rtf1{\\object{\\*\\objdata " + ole1(b"Package", b"\x02")[:-1].hex().encode() + b"}}}", id="bad-ole1"
        ),
        pytest.param(rtf(ole1(b"Package", package("a.exe", EICAR)))[:-40], id="truncated"),
        pytest.param(b"{\\rt", id="header-only"),
    ],
)
def test_malformed_rtf_never_raises_unexpectedly(data: bytes) -> None:
    try:
        members = list(unpack_rtf(data, make_ctx()))
    except UnpackError:
        return
    assert all(isinstance(m.data, bytes) or m.skipped for m in members)
