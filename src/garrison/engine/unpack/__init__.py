"""Unpackers, one container format per module, found through :mod:`.registry`.

Each module registers its unpackers when imported; :func:`unpacker_for` imports the module for a type on first
use (``registry.MODULES`` says which).
"""

from garrison.engine.unpack.registry import Member, UnpackContext, unpacker_for

__all__ = ["Member", "UnpackContext", "unpacker_for"]
