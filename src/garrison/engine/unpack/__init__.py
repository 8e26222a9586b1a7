"""Unpackers, one container format per module, found through :mod:`.registry`.

Importing this package registers every unpacker.
"""

from garrison.engine.unpack import compressed, zipfiles
from garrison.engine.unpack.registry import Member, UnpackContext, unpacker_for

__all__ = ["Member", "UnpackContext", "compressed", "unpacker_for", "zipfiles"]
