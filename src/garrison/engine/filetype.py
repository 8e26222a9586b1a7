"""File typing by content, with ClamAV's type names and target numbers.

Types are named like ClamAV's (``CL_TYPE_ZIP``...) because logical signatures refer to them in
``Container:`` and ``Intermediates:``; ``target_of`` maps them to the ``.ndb`` TargetType numbers. Typing looks
only at the first bytes, so it is cheap enough to run on every object.
"""

from __future__ import annotations

import struct
from enum import StrEnum


class FileType(StrEnum):
    """The content types the engine tells apart."""

    BINARY = "CL_TYPE_BINARY_DATA"
    TEXT = "CL_TYPE_TEXT_ASCII"
    HTML = "CL_TYPE_HTML"
    MAIL = "CL_TYPE_MAIL"
    PE = "CL_TYPE_MSEXE"
    ELF = "CL_TYPE_ELF"
    MACHO = "CL_TYPE_MACHO"
    MACHO_FAT = "CL_TYPE_MACHO_UNIBIN"
    JAVA = "CL_TYPE_JAVA"
    ZIP = "CL_TYPE_ZIP"
    GZ = "CL_TYPE_GZ"
    BZ = "CL_TYPE_BZ"
    XZ = "CL_TYPE_XZ"
    TAR = "CL_TYPE_POSIX_TAR"
    SEVENZIP = "CL_TYPE_7Z"
    RAR = "CL_TYPE_RAR"
    CAB = "CL_TYPE_MSCAB"
    CPIO = "CL_TYPE_CPIO_NEWC"
    ISO = "CL_TYPE_ISO9660"
    AR = "CL_TYPE_AR"
    OLE2 = "CL_TYPE_MSOLE2"
    PDF = "CL_TYPE_PDF"
    RTF = "CL_TYPE_RTF"
    SWF = "CL_TYPE_SWF"
    PNG = "CL_TYPE_PNG"
    GIF = "CL_TYPE_GIF"
    JPEG = "CL_TYPE_JPEG"
    TIFF = "CL_TYPE_TIFF"
    BMP = "CL_TYPE_GRAPHICS"
    # Produced by unpackers, never by content typing:
    VBA = "CL_TYPE_SCRIPT"


# .ndb TargetType numbers (ClamAV appendix FileTypes.md).
TARGET_ANY = 0
TARGET_PE = 1
TARGET_OLE2 = 2
TARGET_HTML = 3
TARGET_MAIL = 4
TARGET_GRAPHICS = 5
TARGET_ELF = 6
TARGET_TEXT = 7
TARGET_MACHO = 9
TARGET_PDF = 10
TARGET_FLASH = 11
TARGET_JAVA = 12
KNOWN_TARGETS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12})

_TARGETS = {
    FileType.PE: TARGET_PE,
    FileType.OLE2: TARGET_OLE2,
    FileType.HTML: TARGET_HTML,
    FileType.MAIL: TARGET_MAIL,
    FileType.PNG: TARGET_GRAPHICS,
    FileType.GIF: TARGET_GRAPHICS,
    FileType.JPEG: TARGET_GRAPHICS,
    FileType.TIFF: TARGET_GRAPHICS,
    FileType.BMP: TARGET_GRAPHICS,
    FileType.ELF: TARGET_ELF,
    FileType.TEXT: TARGET_TEXT,
    FileType.VBA: TARGET_TEXT,
    FileType.MACHO: TARGET_MACHO,
    FileType.MACHO_FAT: TARGET_MACHO,
    FileType.PDF: TARGET_PDF,
    FileType.SWF: TARGET_FLASH,
    FileType.JAVA: TARGET_JAVA,
}


def target_of(file_type: FileType) -> int:
    """The ``.ndb`` TargetType number signatures use for objects of this type (0 when none applies)."""
    return _TARGETS.get(file_type, TARGET_ANY)


# Magic prefixes checked in order; the first match wins.
_PREFIXES: tuple[tuple[bytes, FileType], ...] = (
    (b"\x7fELF", FileType.ELF),
    (b"PK\x03\x04", FileType.ZIP),
    (b"PK\x05\x06", FileType.ZIP),
    (b"PK00PK\x03\x04", FileType.ZIP),
    (b"\x1f\x8b", FileType.GZ),
    (b"BZh", FileType.BZ),
    (b"\xfd7zXZ\x00", FileType.XZ),
    (b"7z\xbc\xaf\x27\x1c", FileType.SEVENZIP),
    (b"Rar!\x1a\x07", FileType.RAR),
    (b"MSCF\x00\x00\x00\x00", FileType.CAB),
    (b"070701", FileType.CPIO),
    (b"070702", FileType.CPIO),
    (b"070707", FileType.CPIO),
    (b"!<arch>\n", FileType.AR),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", FileType.OLE2),
    (b"{\\rt", FileType.RTF),
    (b"FWS", FileType.SWF),
    (b"CWS", FileType.SWF),
    (b"ZWS", FileType.SWF),
    (b"\x89PNG\r\n\x1a\n", FileType.PNG),
    (b"GIF87a", FileType.GIF),
    (b"GIF89a", FileType.GIF),
    (b"\xff\xd8\xff", FileType.JPEG),
    (b"II*\x00", FileType.TIFF),
    (b"MM\x00*", FileType.TIFF),
    (b"\xfe\xed\xfa\xce", FileType.MACHO),
    (b"\xfe\xed\xfa\xcf", FileType.MACHO),
    (b"\xce\xfa\xed\xfe", FileType.MACHO),
    (b"\xcf\xfa\xed\xfe", FileType.MACHO),
)

# The same table indexed by first byte, so typing an object tries only the magics that can match.
_BY_FIRST_BYTE: dict[int, tuple[tuple[bytes, FileType], ...]] = {}
for _magic, _type in _PREFIXES:
    _BY_FIRST_BYTE[_magic[0]] = (*_BY_FIRST_BYTE.get(_magic[0], ()), (_magic, _type))

_MAIL_HEADERS = (
    b"from ",
    b"received:",
    b"return-path:",
    b"delivered-to:",
    b"mime-version:",
    b"message-id:",
    b"x-mailer:",
    b"date:",
    b"subject:",
    b"to:",
    b"from:",
    b"reply-to:",
    b"x-",
)

_HTML_MARKERS = (b"<html", b"<!doctype html", b"<head", b"<body", b"<script", b"<iframe", b"<meta", b"<title")

# Bytes that do not occur in text: controls other than \t \n \v \f \r and ESC/SUB.
_NON_TEXT = bytes(b for b in range(32) if b not in (7, 8, 9, 10, 11, 12, 13, 26, 27))
_TEXT_TABLE = bytes.maketrans(b"", b"")


def detect(data: bytes | memoryview) -> FileType:
    """The type of an object, judged from its first bytes."""
    head = bytes(data[:4096])
    if not head:
        return FileType.BINARY
    for magic, file_type in _BY_FIRST_BYTE.get(head[0], ()):
        if head.startswith(magic):
            return file_type
    if head.startswith(b"MZ"):
        return _pe_or_binary(head, data)
    if head[:2] in (b"\xc7\x71", b"\x71\xc7") and _is_binary_cpio(head):
        return FileType.CPIO
    if head.startswith(b"\xca\xfe\xba\xbe") and len(head) >= 8:
        # Shared magic: a Mach-O universal binary has a small architecture count where a Java class has its
        # version numbers.
        (count,) = struct.unpack(">I", head[4:8])
        return FileType.MACHO_FAT if count < 30 else FileType.JAVA
    if head.startswith(b"BM") and len(head) >= 26 and head[6:10] == b"\x00\x00\x00\x00":
        return FileType.BMP
    if len(head) > 262 and head[257:262] == b"ustar":
        return FileType.TAR
    if len(data) > 0x8006 and bytes(data[0x8001:0x8006]) == b"CD001":
        return FileType.ISO
    pdf_at = head.find(b"%PDF-", 0, 1024)
    if pdf_at >= 0:
        return FileType.PDF
    if _is_text(head):
        lower = head[:1024].lstrip().lower()
        if any(marker in lower for marker in _HTML_MARKERS):
            return FileType.HTML
        if lower.startswith(_MAIL_HEADERS) and b"\n\n" in head.replace(b"\r\n", b"\n") and _looks_like_mail(lower):
            return FileType.MAIL
        return FileType.TEXT
    return FileType.BINARY


def _pe_or_binary(head: bytes, data: bytes | memoryview) -> FileType:
    if len(head) < 64:
        return FileType.BINARY
    (e_lfanew,) = struct.unpack_from("<I", head, 0x3C)
    if e_lfanew + 4 <= len(data) and bytes(data[e_lfanew : e_lfanew + 4]) == b"PE\x00\x00":
        return FileType.PE
    return FileType.BINARY


def _is_binary_cpio(head: bytes) -> bool:
    """A two-byte magic is weak: also require a sane first header (a file type, a NUL-terminated name)."""
    if len(head) < 27:
        return False
    order = "<" if head[:2] == b"\xc7\x71" else ">"
    mode: int = struct.unpack_from(f"{order}H", head, 6)[0]
    namesize: int = struct.unpack_from(f"{order}H", head, 20)[0]
    known_types = {0o010000, 0o020000, 0o040000, 0o060000, 0o100000, 0o120000, 0o140000}
    if mode & 0o170000 not in known_types or not 1 <= namesize <= 1024 or 26 + namesize > len(head):
        return False
    return head[26 + namesize - 1] == 0


def _is_text(head: bytes) -> bool:
    if not head:
        return False
    sample = head[:1024]
    if sample.translate(_TEXT_TABLE, _NON_TEXT) != sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sample's end is still text.
        return exc.start >= len(sample) - 3
    return True


def _looks_like_mail(lower: bytes) -> bool:
    """At least two header lines before the first blank line."""
    headers = lower.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].split(b"\n")
    named = [h for h in headers if h and not h[:1].isspace() and b":" in h.split(b" ", 1)[0] + b":"]
    return len(named) >= 2 and all(h[:1].isspace() or h.startswith(b"from ") or b":" in h for h in headers if h)
