"""Errors raised by the engine.

The engine never raises on hostile *scanned* input: a malformed or oversized file yields a result with a status
and a reason. Exceptions are for broken signature databases and for callers' mistakes::

    EngineError
    ├── DatabaseError          a database cannot be used at all (unreadable, no signatures, bad container)
    │   └── SignatureError     one malformed signature, with the file and line that hold it
    └── UnpackError            raised inside unpackers; the scanner turns it into an "incomplete" result
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class DatabaseError(EngineError):
    """A signature database cannot be loaded."""


class SignatureError(DatabaseError):
    """One signature is malformed.

    Attributes:
        source: the file (or ``container//member``) the signature came from.
        line: 1-based line number, or 0 when the problem is not tied to one line.
        reason: what is wrong, in words a signature author can act on.
    """

    def __init__(self, source: str, line: int, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {reason}")


class UnpackError(EngineError):
    """A container could not be (fully) unpacked; ``reason`` says why in plain words.

    ``detection`` names a heuristic detection the container deserves on its own (a zip with overlapping
    entries is a bomb: ``Heuristics.Zip.OverlappingFiles``), or is None.
    """

    def __init__(self, reason: str, detection: str | None = None) -> None:
        self.reason = reason
        self.detection = detection
        super().__init__(reason)
