"""OLE2 compound files: every stream, plus VBA source through olevba, on documents built by helpers.build_cfb."""

from __future__ import annotations

import io
import zipfile

import pytest

from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType, detect
from garrison.engine.unpack.ole2 import unpack_ole2
from garrison.engine.unpack.zipfiles import unpack_zip

from .helpers import EICAR, build_cfb, by_name, make_ctx, vba_project

MACRO = 'Sub AutoOpen()\r\n    Shell "cmd /c echo X5O!P%@AP"\r\nEnd Sub\r\n'
# A Word FIB with no flags set (in particular not fEncrypted), padded past the mini-stream cutoff.
WORD_DOCUMENT = b"\xec\xa5\xc1\x00" + b"\x00" * 5000


def word_document(macros: dict[str, str] | None = None, **extra: bytes) -> bytes:
    streams = {"WordDocument": WORD_DOCUMENT, "1Table": EICAR, **extra}
    if macros:
        streams.update(vba_project(macros, root="Macros/"))
    return build_cfb(streams)


def test_streams_and_macros_of_a_doc() -> None:
    data = word_document({"Module1": MACRO, "NewMacros": "Sub Foo()\r\nEnd Sub\r\n"})
    assert detect(data) is FileType.OLE2
    members = by_name(unpack_ole2(data, make_ctx()))
    assert members["WordDocument"].data == WORD_DOCUMENT
    assert members["1Table"].data == EICAR
    assert members["Macros/VBA/dir"].data
    source = members["VBA/Module1"]
    assert source.file_type is FileType.VBA
    assert source.data is not None and b'Shell "cmd /c echo X5O!P%@AP"' in source.data
    assert members["VBA/NewMacros"].data == b"Sub Foo()\r\nEnd Sub\r\n"
    assert not any(m.encrypted for m in members.values())


def test_xls_without_macros_yields_streams_only() -> None:
    data = build_cfb({"Workbook": b"\x09\x08" + b"\x00" * 600, "\x05SummaryInformation": b"\xfe\xff" + b"\0" * 50})
    members = by_name(unpack_ole2(data, make_ctx()))
    assert set(members) == {"Workbook", "\x05SummaryInformation"}
    assert not any(m.file_type is FileType.VBA for m in members.values())


def test_docm_recurses_into_vba_project() -> None:
    """End to end: zip -> word/vbaProject.bin (OLE2) -> VBA source, as the scanner will chain them."""
    project = build_cfb(vba_project({"ThisDocument": "Sub Document_Open()\r\nMsgBox 1\r\nEnd Sub\r\n"}))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
        archive.writestr("word/vbaProject.bin", project)
    inner = by_name(unpack_zip(out.getvalue(), make_ctx()))["word/vbaProject.bin"]
    assert inner.data is not None and detect(inner.data) is FileType.OLE2
    sources = [m for m in unpack_ole2(inner.data, make_ctx()) if m.file_type is FileType.VBA]
    assert [(m.name, m.data) for m in sources] == [
        ("VBA/ThisDocument", b"Sub Document_Open()\r\nMsgBox 1\r\nEnd Sub\r\n")
    ]


def test_encrypted_ooxml_package_is_reported() -> None:
    data = build_cfb(
        {"EncryptionInfo": b"\x04\x00\x04\x00\x40\x00\x00\x00" + b"\0" * 100, "EncryptedPackage": b"\0" * 5000}
    )
    members = by_name(unpack_ole2(data, make_ctx()))
    assert members["EncryptedPackage"].encrypted
    assert members["EncryptedPackage"].data is None
    assert members["EncryptionInfo"].data is not None


def test_legacy_encrypted_doc_is_reported() -> None:
    # FIB flags at offset 0x0A: fEncrypted (0x0100); the streams stay readable, the document is flagged.
    fib = bytearray(WORD_DOCUMENT)
    fib[0x0B] |= 0x01
    members = by_name(unpack_ole2(build_cfb({"WordDocument": bytes(fib), "1Table": b"\0" * 64}), make_ctx()))
    assert members["encrypted-document"].encrypted


def test_oversized_stream_and_macro() -> None:
    long_macro = MACRO + "' " + "x" * 8192 + "\r\n" + "' " + "y" * 3000 + "\r\n"
    members = by_name(unpack_ole2(word_document({"Module1": long_macro}), make_ctx(max_member_size=4096)))
    assert members["WordDocument"].limit == "max_file_size"
    assert members["VBA/Module1"].limit == "max_file_size"
    assert members["1Table"].data == EICAR


@pytest.mark.parametrize("name", ["../../etc/passwd", "line\nbreak", "nul\x00byte", "\x01CompObj"])
def test_hostile_stream_names(name: str) -> None:
    members = by_name(unpack_ole2(build_cfb({name: EICAR, "WordDocument": WORD_DOCUMENT}), make_ctx()))
    assert EICAR in [m.data for m in members.values()]
    for member in members.values():
        member.name.encode("utf-8")


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda d: d[:700], id="truncated"),
        pytest.param(lambda d: d[:512], id="header-only"),
        pytest.param(lambda d: d[:48] + b"\xff\xff\xff\x7f" + d[52:], id="bad-directory-sector"),
        pytest.param(lambda d: d[:76] + b"\x05\x00\x00\x00" + d[80:], id="bad-fat-sector"),
        pytest.param(lambda d: d[: len(d) - 1024], id="missing-tail"),
    ],
)
def test_corrupt_files_fail_cleanly(mangle: object) -> None:
    data = mangle(word_document({"Module1": MACRO}))  # type: ignore[operator]
    try:
        members = list(unpack_ole2(data, make_ctx()))
    except UnpackError:
        return
    assert all(isinstance(m.data, bytes) or m.skipped or m.encrypted for m in members)


def test_broken_vba_project_keeps_the_streams() -> None:
    streams = vba_project({"Module1": MACRO}, root="Macros/")
    streams["Macros/VBA/dir"] = b"\x01\xff\xff" + b"\x00" * 40
    members = by_name(unpack_ole2(build_cfb({"WordDocument": WORD_DOCUMENT, **streams}), make_ctx()))
    assert members["WordDocument"].data == WORD_DOCUMENT
    assert "Macros/VBA/Module1" in members
