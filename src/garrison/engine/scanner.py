"""The scanner: one file or buffer in, a :class:`ScanResult` out, containers unpacked recursively under limits.

Sans-I/O apart from reading the one file it is asked to scan: no network, no logging setup, no policy. It never
raises on hostile input; every failure becomes a status and a reason on the object it concerns.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass, field

import yara_x

from garrison.engine import hashing
from garrison.engine.eicar import EICAR_NAME, is_eicar
from garrison.engine.errors import UnpackError
from garrison.engine.filetype import FileType, detect, target_of
from garrison.engine.limits import LIMIT_NAMES, ScanLimits
from garrison.engine.results import (
    Detection,
    DetectionKind,
    ObjectResult,
    ScanResult,
    Status,
    printable,
    worst,
)
from garrison.engine.signatures.database import Database
from garrison.engine.unpack import Member, UnpackContext, unpacker_for
from garrison.engine.unpack.registry import Unpacker

_ENCRYPTED_NAMES = {
    FileType.ZIP: "Heuristics.Encrypted.Zip",
    FileType.RAR: "Heuristics.Encrypted.RAR",
    FileType.SEVENZIP: "Heuristics.Encrypted.7Zip",
    FileType.PDF: "Heuristics.Encrypted.PDF",
    FileType.OLE2: "Heuristics.Encrypted.Doc",
}

_OPEN_ERRORS = {
    errno.ENOENT: "file vanished before it could be read",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "is a symbolic link",
    errno.EISDIR: "is a directory",
    errno.EIO: "input/output error while reading",
}


@dataclass
class _Walk:
    """The state of one root scan: budgets spent and objects found so far."""

    deadline: float
    objects: list[ObjectResult | None] = field(default_factory=list)
    scanned: int = 0
    members: int = 0


@dataclass
class _Verdict:
    """What is known about one object while its members are still being scanned."""

    detections: list[Detection] = field(default_factory=list)
    reason: str | None = None
    error: bool = False

    def incomplete(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason


class Engine:
    """Scans files and buffers with a signature database under limits.

    Args:
        database: compiled signatures; None scans with the built-in checks only (EICAR).
        limits: what one scan may spend.
        clean_members: list clean members in results (True), or only the root object and members that are
            not clean (False), which keeps results of big clean archives small.
    """

    def __init__(
        self, database: Database | None = None, limits: ScanLimits | None = None, *, clean_members: bool = True
    ) -> None:
        self.database = database if database is not None else Database.empty()
        self.limits = limits if limits is not None else ScanLimits()
        self.clean_members = clean_members

    # -- entry points ---------------------------------------------------------------------------------------

    def scan_bytes(self, data: bytes, name: str = "stdin") -> ScanResult:
        """Scan a buffer as if it were a file called ``name``."""
        started = time.monotonic()
        walk = _Walk(deadline=started + self.limits.max_scan_time)
        label = printable(name)
        if len(data) > self.limits.max_file_size:
            self._limited(walk, (label,), FileType.BINARY, len(data), "max_file_size", "file is over the size limit")
        else:
            self._scan_object(walk, data, (label,), 0, (), None)
        return self._result(label, walk, started)

    def scan_file(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> ScanResult:
        """Scan one file. Unreadable, vanished and special files give an ``error`` result, not an exception."""
        started = time.monotonic()
        label = printable(os.fsdecode(path))
        try:
            data = self._read(path)
        except _ReadProblem as problem:
            walk = _Walk(deadline=started)
            if problem.limit:
                self._limited(walk, (label,), FileType.BINARY, problem.size, problem.limit, problem.reason)
            else:
                walk.objects.append(
                    ObjectResult((label,), FileType.BINARY.value, problem.size, Status.ERROR, reason=problem.reason)
                )
            return self._result(label, walk, started)
        walk = _Walk(deadline=started + self.limits.max_scan_time)
        self._scan_object(walk, data, (label,), 0, (), None)
        return self._result(label, walk, started)

    def _read(self, path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> bytes:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise _ReadProblem(_OPEN_ERRORS.get(exc.errno or 0, f"cannot open: {exc.strerror}")) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise _ReadProblem("not a regular file")
            if info.st_size > self.limits.max_file_size:
                raise _ReadProblem("file is over the size limit", info.st_size, "max_file_size")
            chunks = []
            remaining = self.limits.max_file_size + 1
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 16 * 1024 * 1024))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            data = b"".join(chunks)
            if len(data) > self.limits.max_file_size:
                raise _ReadProblem("file grew over the size limit while being read", len(data), "max_file_size")
            return data
        except OSError as exc:
            raise _ReadProblem(_OPEN_ERRORS.get(exc.errno or 0, f"cannot read: {exc.strerror}")) from None
        finally:
            os.close(fd)

    # -- recursion ------------------------------------------------------------------------------------------

    def _scan_object(
        self,
        walk: _Walk,
        data: bytes,
        chain: tuple[str, ...],
        depth: int,
        containers: tuple[str, ...],
        forced_type: FileType | None,
    ) -> None:
        limits = self.limits
        file_type = forced_type or detect(data)
        size = len(data)
        if time.monotonic() > walk.deadline:
            self._limited(walk, chain, file_type, size, "max_scan_time", "scan time limit reached")
            return
        if walk.scanned + size > limits.max_scan_size:
            self._limited(walk, chain, file_type, size, "max_scan_size", "scan size limit reached")
            return
        walk.scanned += size
        index = len(walk.objects)
        walk.objects.append(None)

        database = self.database
        digests = hashing.digests(data, database.algorithms_for(size))
        if digests and database.allowed(digests, size):
            walk.objects[index] = ObjectResult(chain, file_type.value, size, Status.CLEAN, reason=None)
            return
        verdict = _Verdict()
        if is_eicar(data):
            verdict.detections.append(Detection(EICAR_NAME, DetectionKind.BUILTIN))
        verdict.detections.extend(database.lookup_hashes(digests, size))
        self._match(walk, verdict, data, file_type, containers, normalized=False)

        unpack = unpacker_for(file_type)
        if unpack is not None:
            if depth >= limits.max_depth:
                self._limit_hit(verdict, "max_depth", "containers nested deeper than the recursion limit")
            else:
                self._members(walk, verdict, unpack, data, chain, depth, (*containers, file_type.value))

        walk.objects[index] = self._object(chain, file_type, data, verdict, digests)

    def _match(
        self,
        walk: _Walk,
        verdict: _Verdict,
        data: bytes,
        file_type: FileType,
        containers: tuple[str, ...],
        *,
        normalized: bool,
    ) -> None:
        try:
            verdict.detections.extend(
                self.database.match(
                    data,
                    target=target_of(file_type),
                    file_type=file_type.value,
                    container=containers[-1] if containers else "",
                    intermediates=">".join(containers),
                    normalized=normalized,
                    timeout=max(walk.deadline - time.monotonic(), 1.0),
                )
            )
        except yara_x.TimeoutError:
            self._limit_hit(verdict, "max_scan_time", "scan time limit reached while matching")
        except yara_x.ScanError as exc:
            verdict.incomplete(f"signature matching failed: {exc}")

    def _members(
        self,
        walk: _Walk,
        verdict: _Verdict,
        unpack: Unpacker,
        data: bytes,
        chain: tuple[str, ...],
        depth: int,
        containers: tuple[str, ...],
    ) -> None:
        limits = self.limits
        context = UnpackContext(
            limits, 0, walk.deadline, normalize=bool(self.database.normalized_targets), name=chain[-1]
        )
        self._budget(context, walk)
        container_type = FileType(containers[-1])
        try:
            for member in unpack(data, context):
                if member.normalized:
                    if target_of(member.file_type or FileType.TEXT) in self.database.normalized_targets:
                        self._match(walk, verdict, member.data or b"", member.file_type or FileType.TEXT,
                                    containers[:-1], normalized=True)  # fmt: skip
                    continue
                walk.members += 1
                if walk.members > limits.max_members:
                    self._limit_hit(verdict, "max_members", "too many members in the container")
                    break
                if time.monotonic() > walk.deadline:
                    self._limit_hit(verdict, "max_scan_time", "scan time limit reached")
                    break
                self._member(walk, member, chain, depth, containers, container_type)
                self._budget(context, walk)
        except UnpackError as exc:
            verdict.incomplete(exc.reason)
            if exc.detection:
                verdict.detections.append(Detection(exc.detection, DetectionKind.HEURISTIC))
        except Exception as exc:
            verdict.incomplete(f"could not unpack the {_kind(container_type)}: {type(exc).__name__}")

    def _budget(self, context: UnpackContext, walk: _Walk) -> None:
        """Let the next member be no larger than one object may be, nor than what is left of the scan budget."""
        remaining = max(0, self.limits.max_scan_size - walk.scanned)
        context.max_member_size = min(self.limits.max_file_size, remaining)
        context.size_limit = "max_scan_size" if remaining < self.limits.max_file_size else "max_file_size"

    def _member(
        self,
        walk: _Walk,
        member: Member,
        chain: tuple[str, ...],
        depth: int,
        containers: tuple[str, ...],
        container_type: FileType,
    ) -> None:
        member_chain = (*chain, printable(member.name))
        if member.data is not None:
            self._scan_object(walk, member.data, member_chain, depth + 1, containers, member.file_type)
            return
        detections: list[Detection] = []
        if member.encrypted and self.limits.alert_encrypted:
            name = _ENCRYPTED_NAMES.get(container_type, "Heuristics.Encrypted")
            detections.append(Detection(name, DetectionKind.HEURISTIC))
        if member.limit and self.limits.alert_exceeds_max:
            detections.append(_limit_detection(member.limit))
        status = Status.INFECTED if detections else Status.INCOMPLETE
        reason = member.skipped or ("encrypted" if member.encrypted else "not extracted")
        walk.objects.append(
            ObjectResult(member_chain, FileType.BINARY.value, 0, status, tuple(detections), reason=reason)
        )

    # -- results --------------------------------------------------------------------------------------------

    def _limit_hit(self, verdict: _Verdict, limit: str, reason: str) -> None:
        verdict.incomplete(reason)
        if self.limits.alert_exceeds_max:
            verdict.detections.append(_limit_detection(limit))

    def _limited(
        self, walk: _Walk, chain: tuple[str, ...], file_type: FileType, size: int, limit: str, reason: str
    ) -> None:
        verdict = _Verdict()
        self._limit_hit(verdict, limit, reason)
        walk.objects.append(self._object(chain, file_type, b"", verdict, {}, size=size))

    def _object(
        self,
        chain: tuple[str, ...],
        file_type: FileType,
        data: bytes,
        verdict: _Verdict,
        digests: dict[str, bytes],
        size: int | None = None,
    ) -> ObjectResult:
        if verdict.detections:
            status = Status.INFECTED
            # Infected objects always carry their hashes: the server allow-lists and shares by hash.
            for algorithm in ("md5", "sha256"):
                if algorithm not in digests and data:
                    digests = {**digests, **hashing.digests(data, (algorithm,))}
        elif verdict.error:
            status = Status.ERROR
        elif verdict.reason:
            status = Status.INCOMPLETE
        else:
            status = Status.CLEAN
        md5, sha256 = digests.get("md5"), digests.get("sha256")
        return ObjectResult(
            chain,
            file_type.value,
            len(data) if size is None else size,
            status,
            tuple(dict.fromkeys(verdict.detections)),
            reason=verdict.reason,
            md5=md5.hex() if md5 else None,
            sha256=sha256.hex() if sha256 else None,
        )

    def _result(self, label: str, walk: _Walk, started: float) -> ScanResult:
        objects = tuple(
            o
            for i, o in enumerate(walk.objects)
            if o is not None and (i == 0 or self.clean_members or o.status is not Status.CLEAN)
        )
        return ScanResult(
            path=label,
            status=worst([o.status for o in objects]),
            objects=objects,
            scanned_bytes=walk.scanned,
            duration=time.monotonic() - started,
        )


class _ReadProblem(Exception):
    def __init__(self, reason: str, size: int = 0, limit: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.size = size
        self.limit = limit


def _limit_detection(limit: str) -> Detection:
    return Detection(f"Heuristics.Limits.Exceeded.{LIMIT_NAMES[limit]}", DetectionKind.HEURISTIC)


def _kind(file_type: FileType) -> str:
    return file_type.value.removeprefix("CL_TYPE_").lower().replace("_", " ")
