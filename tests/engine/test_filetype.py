from __future__ import annotations

import bz2
import gzip
import lzma
import struct

import pytest

from garrison.engine.filetype import FileType, detect, target_of
from tests.conftest import zip_bytes


def _pe() -> bytes:
    dos = bytearray(b"MZ" + b"\0" * 62)
    struct.pack_into("<I", dos, 0x3C, 64)
    return bytes(dos) + b"PE\0\0" + b"\0" * 200


CASES = [
    (_pe(), FileType.PE, 1),
    (b"MZ" + b"\0" * 100, FileType.BINARY, 0),
    (b"\x7fELF\x02\x01\x01" + b"\0" * 60, FileType.ELF, 6),
    (zip_bytes({"a": b"b"}), FileType.ZIP, 0),
    (gzip.compress(b"x"), FileType.GZ, 0),
    (bz2.compress(b"x"), FileType.BZ, 0),
    (lzma.compress(b"x"), FileType.XZ, 0),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, FileType.OLE2, 2),
    (b"%PDF-1.7\n", FileType.PDF, 10),
    (b"{\\rtf1\\ansi hello}", FileType.RTF, 0),
    (b"<!DOCTYPE html><html><body>x</body></html>", FileType.HTML, 3),
    (b"  <script>alert(1)</script>", FileType.HTML, 3),
    (b"From: a@b\nTo: c@d\nSubject: hi\n\nbody\n", FileType.MAIL, 4),
    (b"just some words\nand more\n", FileType.TEXT, 7),
    ("Tiếng Việt có dấu\n".encode(), FileType.TEXT, 7),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, FileType.PNG, 5),
    (b"\xca\xfe\xba\xbe\x00\x00\x00\x34", FileType.JAVA, 12),
    (b"\xca\xfe\xba\xbe\x00\x00\x00\x02", FileType.MACHO_FAT, 9),
    (b"\x00\x01\x02\x03binary", FileType.BINARY, 0),
    (b"", FileType.BINARY, 0),
]


@pytest.mark.parametrize(("data", "expected", "target"), CASES, ids=[c[1].name + str(i) for i, c in enumerate(CASES)])
def test_detect(data: bytes, expected: FileType, target: int) -> None:
    assert detect(data) is expected
    assert target_of(expected) == target


def test_tar_is_detected_by_its_ustar_magic() -> None:
    header = bytearray(512)
    header[257:262] = b"ustar"
    assert detect(bytes(header)) is FileType.TAR


def _cpio_binary_header(mode: int, name: bytes) -> bytes:
    header = struct.pack("<13H", 0o070707, 0, 1, mode, 0, 0, 1, 0, 0, 0, len(name) + 1, 0, 4)
    return header + name + b"\0" + b"data"


def test_binary_cpio_needs_a_sane_header() -> None:
    assert detect(_cpio_binary_header(0o100644, b"file.txt")) is FileType.CPIO
    # Random data that only shares the two magic bytes is not an archive.
    assert detect(b"\xc7\x71" + bytes(range(200))) is FileType.BINARY
    assert detect(_cpio_binary_header(0o777, b"x")) is FileType.BINARY
