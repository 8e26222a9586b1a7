"""Ignore lists (``.ign``, ``.ign2``): signatures switched off by name, optionally pinned to one line's MD5."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from garrison.engine.errors import SignatureError

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass
class IgnoreList:
    """Names to ignore; a name mapped to MD5s is ignored only where its database line has one of them."""

    anywhere: set[str] = field(default_factory=set)
    pinned: dict[str, set[str]] = field(default_factory=dict)

    def add_line(self, text: str, source: str, lineno: int, legacy: bool) -> None:
        """Add one line of an ``.ign2`` (``Name[:md5]``) or legacy ``.ign`` (``db:line:Name[:md5]``) file."""
        fields = text.split(":")
        if legacy and len(fields) >= 3:
            fields = fields[2:]
        name = fields[0]
        if not _NAME.match(name) or len(fields) > 2:
            raise SignatureError(source, lineno, f"expected a signature name with an optional :md5, got {text[:80]!r}")
        if len(fields) == 2:
            if not _MD5.match(fields[1]):
                raise SignatureError(source, lineno, f"{fields[1][:40]!r} is not an MD5 of a signature line")
            self.pinned.setdefault(name, set()).add(fields[1].lower())
        else:
            self.anywhere.add(name)

    def ignores(self, name: str, line: str) -> bool:
        """True when the signature called ``name``, written as ``line`` in its database, is switched off."""
        if name in self.anywhere:
            return True
        pins = self.pinned.get(name)
        return pins is not None and hashlib.md5(line.encode(), usedforsecurity=False).hexdigest() in pins

    def __len__(self) -> int:
        return len(self.anywhere) + len(self.pinned)
