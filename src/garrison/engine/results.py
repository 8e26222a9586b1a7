"""Scan results: what the engine says about a file and about every object unpacked from it.

These types are the engine's contract with the command line, the agent and the server, so their dictionary
form (``to_dict``) is stable and versioned by ``SCHEMA_VERSION``. Add fields; never rename or remove them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1

#: Separator between the names in an object's chain, as in ``mail.eml//invoice.zip//macro.doc``.
CHAIN_SEPARATOR = "//"


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)}


def printable(name: str) -> str:
    """A name safe to print on one line: control characters and undecodable bytes shown as ``\\xNN``.

    File and member names come from attackers; a newline in one must not forge an extra line of output.
    """
    if name.isprintable():
        return name
    raw = name.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace").translate(_CONTROL)


class Status(StrEnum):
    """The verdict on one object or one file.

    ``incomplete`` means part of the object could not be scanned (a limit was hit, a member was encrypted or
    corrupt); what *was* scanned was clean. ``error`` means the object could not be scanned at all.
    """

    CLEAN = "clean"
    INFECTED = "infected"
    ERROR = "error"
    INCOMPLETE = "incomplete"


# Precedence when objects are rolled up into the file's status.
_RANK = {Status.CLEAN: 0, Status.INCOMPLETE: 1, Status.ERROR: 2, Status.INFECTED: 3}


def worst(statuses: list[Status]) -> Status:
    """The status of a file made of objects with these statuses."""
    return max(statuses, key=_RANK.__getitem__, default=Status.CLEAN)


class DetectionKind(StrEnum):
    """Which kind of signature produced a detection."""

    HASH = "hash"
    BODY = "body"
    LOGICAL = "logical"
    YARA = "yara"
    BUILTIN = "builtin"
    HEURISTIC = "heuristic"


@dataclass(frozen=True, slots=True)
class Detection:
    """One signature that matched.

    Attributes:
        name: the detection name, as the database spells it (``Win.Test.EICAR_HDB-1``).
        kind: the kind of signature.
        database: the file the signature came from (``daily.cvd//daily.ldb``), or None for built-in checks.
        signature: where in that file: ``line 12`` for ClamAV databases, the rule identifier for YARA.
    """

    name: str
    kind: DetectionKind
    database: str | None = None
    signature: str | None = None

    def __reduce__(self) -> tuple[type[Detection], tuple[Any, ...]]:
        # Positional re-creation: several times cheaper than pickle's default for frozen slotted dataclasses,
        # and results cross a process boundary for every scanned file.
        return (Detection, (self.name, self.kind, self.database, self.signature))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "database": self.database,
            "signature": self.signature,
        }


@dataclass(frozen=True, slots=True)
class ObjectResult:
    """The verdict on one scanned object: the root file (chain of one name) or an unpacked member.

    Attributes:
        chain: names from the root file down to this object.
        file_type: the detected type, in ClamAV's ``CL_TYPE_*`` names.
        size: the object's size in bytes (as much as was read or extracted).
        status: clean, infected, error or incomplete.
        detections: signatures that matched this object.
        reason: why the status is error or incomplete, in plain words.
        md5, sha256: the object's hashes when they were computed (always for infected objects).
    """

    chain: tuple[str, ...]
    file_type: str
    size: int
    status: Status
    detections: tuple[Detection, ...] = ()
    reason: str | None = None
    md5: str | None = None
    sha256: str | None = None

    def __reduce__(self) -> tuple[type[ObjectResult], tuple[Any, ...]]:
        return (
            ObjectResult,
            (self.chain, self.file_type, self.size, self.status, self.detections, self.reason, self.md5, self.sha256),
        )

    @property
    def display_name(self) -> str:
        return CHAIN_SEPARATOR.join(self.chain)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain": list(self.chain),
            "name": self.display_name,
            "file_type": self.file_type,
            "size": self.size,
            "status": self.status.value,
            "detections": [d.to_dict() for d in self.detections],
            "reason": self.reason,
            "md5": self.md5,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The verdict on one file (or one buffer) and everything unpacked from it.

    Attributes:
        path: the file's path as given, with undecodable bytes escaped (``\\udcff`` style surrogates are
            rendered as ``\\xff``), so it can always be printed and serialised.
        status: the worst status among the objects (infected > error > incomplete > clean).
        objects: the root object first, then every member in the order it was scanned.
        scanned_bytes: bytes actually matched against signatures, members included.
        duration: seconds spent, unpacking included.
    """

    path: str
    status: Status
    objects: tuple[ObjectResult, ...]
    scanned_bytes: int = 0
    duration: float = 0.0
    finished_at: float = field(default_factory=time.time)

    def __reduce__(self) -> tuple[type[ScanResult], tuple[Any, ...]]:
        return (
            ScanResult,
            (self.path, self.status, self.objects, self.scanned_bytes, self.duration, self.finished_at),
        )

    @property
    def detections(self) -> list[tuple[ObjectResult, Detection]]:
        """Every detection, with the object it was found in."""
        return [(obj, det) for obj in self.objects for det in obj.detections]

    @property
    def reason(self) -> str | None:
        """The first reason given by an object that is not clean and not infected."""
        for obj in self.objects:
            if obj.reason:
                return obj.reason
        return None

    def to_dict(self, *, members: bool = True) -> dict[str, Any]:
        """The stable, machine-readable form; ``members=False`` keeps only objects that are not clean."""
        objects = self.objects if members else [o for o in self.objects if o.status is not Status.CLEAN]
        return {
            "schema": SCHEMA_VERSION,
            "path": self.path,
            "status": self.status.value,
            "detections": [{"object": obj.display_name, **det.to_dict()} for obj, det in self.detections],
            "reason": self.reason,
            "scanned_bytes": self.scanned_bytes,
            "duration": round(self.duration, 6),
            "objects": [o.to_dict() for o in objects],
        }
