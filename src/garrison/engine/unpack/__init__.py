"""Unpackers, one container format per module, found through :mod:`.registry`.

Importing this package registers every unpacker.
"""

from garrison.engine.unpack import (
    compressed,
    html,
    libarchive_formats,
    mail,
    ole2,
    pdf,
    rtf,
    sevenzip,
    tarfiles,
    text,
    zipfiles,
)
from garrison.engine.unpack.registry import Member, UnpackContext, unpacker_for

__all__ = [
    "Member",
    "UnpackContext",
    "compressed",
    "html",
    "libarchive_formats",
    "mail",
    "ole2",
    "pdf",
    "rtf",
    "sevenzip",
    "tarfiles",
    "text",
    "unpacker_for",
    "zipfiles",
]
