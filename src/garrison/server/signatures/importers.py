"""Turning an uploaded, dropped or downloaded file into the files of a signature source, or a clear refusal.

Pure functions over bytes: no database, no disk but a temporary directory for the engine's check, no network, no
logging of contents. :func:`unpack` recognises the format (by extension, then by content), opens containers and
archives under :class:`ImportLimits`, converts IOC lists to ``.hsb`` lines; :func:`apply_cdiff` applies a ClamAV
``.cdiff`` to a container source's files; :func:`validate` loads the candidate files with the engine (strict), so
a source that the engine would refuse is refused here, with the engine's reason, before anything changes.

Every refusal is a :class:`Refused` (HTTP 400) whose message says what is wrong.
"""

from __future__ import annotations

import io
import json
import re
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from garrison.engine import DatabaseError, load_database
from garrison.engine.signatures import cdiff, cvd, ioc
from garrison.engine.signatures.database import CONTAINER_EXTENSIONS, KNOWN_EXTENSIONS, YARA_EXTENSIONS
from garrison.server.errors import BadRequest
from garrison.server.signatures.models import SourceFormat

MiB = 1024 * 1024
#: Extensions of the signature files a source may hold (what the engine loads, containers excepted).
SIGNATURE_EXTENSIONS = frozenset(KNOWN_EXTENSIONS - CONTAINER_EXTENSIONS)
#: Files that travel inside ClamAV containers and are kept with their databases (needed to apply cdiffs).
CONTAINER_EXTRAS = frozenset({".info"})
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
IOC_SUFFIXES = (".csv", ".json", ".stix")
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_NAME = 100


class Refused(BadRequest):
    """The file cannot become (or update) a signature source; the message says why."""


@dataclass(frozen=True, slots=True)
class ContainerKeys:
    """The keys ClamAV containers and cdiffs must be signed with (Talos's by default; tests use their own).

    Attributes:
        cvd_key: key of the header signature of a ``.cvd``.
        info_key: key of the ``DSIG:`` line of a container's ``.info`` manifest.
        cdiff_key: key of a ``.cdiff``'s signature.
        allow_unsigned: accept ``.cud`` containers (built with ``sigtool --unsigned``, no signature at all).
    """

    cvd_key: cvd.RsaPublicKey = cvd.CLAMAV_CVD_KEY
    info_key: cvd.RsaPublicKey = cvd.CLAMAV_INFO_KEY
    cdiff_key: cvd.RsaPublicKey = cdiff.CLAMAV_CDIFF_KEY
    allow_unsigned: bool = False


@dataclass(frozen=True, slots=True)
class ImportLimits:
    """How big an import may be: the file itself, and what containers and archives unpack to."""

    max_file: int = 512 * MiB
    max_total: int = 2048 * MiB
    max_members: int = 10_000

    def __post_init__(self) -> None:
        if min(self.max_file, self.max_total, self.max_members) <= 0:
            raise ValueError("ImportLimits values must be positive")


@dataclass(frozen=True, slots=True)
class Unpacked:
    """What a file holds, ready to become a source's files.

    Attributes:
        format: the source format (a :class:`SourceFormat` value).
        files: file name (plain) to content.
        version: the container's version (ClamAV containers and cdiffs); None when the source counts imports.
        warnings: what was left out (files of unknown kinds in an archive, IOC rows skipped...).
    """

    format: str
    files: dict[str, bytes]
    version: int | None = None
    warnings: tuple[str, ...] = field(default=())


def suffix_of(filename: str) -> str:
    lowered = filename.lower()
    for double in (".tar.gz",):
        if lowered.endswith(double):
            return double
    return PurePosixPath(lowered).suffix


def is_cdiff(filename: str) -> bool:
    return suffix_of(filename) == ".cdiff"


def cdiff_database(filename: str) -> str:
    """The database a cdiff updates: ``daily-27001.cdiff`` → ``daily``."""
    return PurePosixPath(filename).stem.rsplit("-", 1)[0]


def plain_name(name: str) -> str:
    """``name`` made a plain file name (letters, digits, ``. _ -``, starting with a letter or digit)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).lstrip("._-")[:MAX_NAME]
    if not cleaned or not PLAIN_NAME.fullmatch(cleaned):
        raise Refused(f"{name[:80]!r} cannot be used as a file name")
    return cleaned


def unpack(filename: str, data: bytes, *, source: str, keys: ContainerKeys, limits: ImportLimits) -> Unpacked:
    """The files ``data`` (named ``filename``) holds, for the source named ``source``.

    Raises:
        Refused: an unknown or broken format, a bad signature, a hostile archive, a file over the limits.
    """
    if len(data) > limits.max_file:
        raise Refused(f"{filename}: the file is larger than the {limits.max_file} bytes an import may have")
    if not data:
        raise Refused(f"{filename}: the file is empty")
    suffix = suffix_of(filename)
    if suffix in CONTAINER_EXTENSIONS:
        return _container(filename, data, keys, limits)
    if suffix == ".cdiff":
        raise Refused(f"{filename}: a .cdiff updates an existing ClamAV database source; import the .cvd first")
    if suffix in ARCHIVE_SUFFIXES:
        files, warnings = (_zip if suffix == ".zip" else tar_members)(filename, data, limits)
        return _plain(filename, files, warnings)
    if suffix in IOC_SUFFIXES or data.lstrip()[:1] == b"{":
        return _ioc(filename, data, source)
    if suffix in SIGNATURE_EXTENSIONS:
        return _plain(filename, {plain_name(PurePosixPath(filename).name): data}, [])
    raise Refused(
        f"{filename}: not a signature file Garrison knows (ClamAV .cvd .cld .cud .cdiff .hdb .hsb .ndb .ldb .fp .sfp"
        " .ign2, YARA .yar .yara, .zip or .tar.gz of them, IOC lists .csv or STIX/MISP .json)"
    )


def _container(filename: str, data: bytes, keys: ContainerKeys, limits: ImportLimits) -> Unpacked:
    try:
        container = cvd.read_container(
            data,
            filename,
            key=keys.cvd_key,
            info_key=keys.info_key,
            limits=cvd.CvdLimits(max_total_size=limits.max_total, max_members=limits.max_members),
        )
    except DatabaseError as exc:
        raise Refused(str(exc)) from None
    if not container.signed and not keys.allow_unsigned:
        raise Refused(f"{filename}: the container is not signed; only signed ClamAV containers are accepted")
    files: dict[str, bytes] = {}
    warnings: list[str] = []
    for member, content in container.files.items():
        suffix = PurePosixPath(member.lower()).suffix
        if member == "COPYING" or suffix in SIGNATURE_EXTENSIONS | CONTAINER_EXTRAS:
            if not PLAIN_NAME.fullmatch(member) or len(member) > MAX_NAME:
                raise Refused(f"{filename}: member {member[:80]!r} is not a plain file name")
            files[member] = content
        else:
            warnings.append(f"{member}: not a signature file Garrison uses; left out")
    return Unpacked(SourceFormat.CLAMAV_CVD.value, files, container.header.version, tuple(warnings))


def apply_cdiff(
    filename: str, data: bytes, *, files: Mapping[str, bytes], version: int | None, keys: ContainerKeys
) -> Unpacked:
    """Apply the cdiff ``data`` to the files of a container source at ``version``: the files of the next version.

    Raises:
        Refused: a bad signature or a broken cdiff, one that does not follow ``version``, or one that does not
            apply to these files.
    """
    try:
        parsed = cdiff.parse_cdiff(data, key=keys.cdiff_key)
    except DatabaseError as exc:
        raise Refused(f"{filename}: {exc}") from None
    new_version = parsed.version
    if version is None or new_version != version + 1:
        raise Refused(
            f"{filename}: this cdiff makes version {new_version}, but the source is at version {version}; "
            f"it needs the cdiff to version {(version or 0) + 1} (or import the whole .cvd)"
        )
    try:
        applied = cdiff.apply_cdiff(files, parsed)
    except DatabaseError as exc:
        raise Refused(f"{filename}: {exc}") from None
    for name in applied:
        if not PLAIN_NAME.fullmatch(name) or len(name) > MAX_NAME:
            raise Refused(f"{filename}: the cdiff makes a file with a bad name {name[:80]!r}")
    return Unpacked(SourceFormat.CLAMAV_CVD.value, applied, new_version)


def _member_name(archive: str, raw: str, seen: dict[str, bytes]) -> str:
    name = raw
    if "\\" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise Refused(f"{archive}: member {raw[:80]!r} has an absolute or Windows path; refused")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise Refused(f"{archive}: member {raw[:80]!r} points outside the archive; refused")
    if not parts:
        raise Refused(f"{archive}: a member has no name; refused")
    base = parts[-1]
    if not PLAIN_NAME.fullmatch(base) or len(base) > MAX_NAME:
        raise Refused(f"{archive}: member {raw[:80]!r} is not a plain file name; refused")
    if base in seen:
        raise Refused(f"{archive}: two members are named {base!r}; refused")
    return base


def _keep(archive: str, name: str, warnings: list[str]) -> bool:
    if suffix_of(name) in SIGNATURE_EXTENSIONS:
        return True
    warnings.append(f"{name}: not a signature file; left out")
    return False


def _zip(filename: str, data: bytes, limits: ImportLimits) -> tuple[dict[str, bytes], list[str]]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise Refused(f"{filename}: not a readable zip archive ({exc})") from None
    files: dict[str, bytes] = {}
    warnings: list[str] = []
    with archive:
        members = archive.infolist()
        if len(members) > limits.max_members:
            raise Refused(f"{filename}: more than {limits.max_members} members; refused")
        total = 0
        for info in members:
            if info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                raise Refused(f"{filename}: member {info.filename[:80]!r} is a link; refused")
            if info.flag_bits & 0x1:
                raise Refused(f"{filename}: member {info.filename[:80]!r} is encrypted; refused")
            name = _member_name(filename, info.filename, files)
            if not _keep(filename, name, warnings):
                continue
            total += info.file_size
            if total > limits.max_total:
                raise Refused(f"{filename}: the members unpack to more than {limits.max_total} bytes; refused")
            try:
                with archive.open(info) as member:
                    content = member.read(info.file_size + 1)  # a member larger than it says is caught below
            except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
                raise Refused(f"{filename}: member {name} cannot be read ({exc})") from None
            if len(content) != info.file_size:
                raise Refused(f"{filename}: member {name} is not the size the archive says; refused")
            files[name] = content
    return files, warnings


def tar_members(filename: str, data: bytes, limits: ImportLimits) -> tuple[dict[str, bytes], list[str]]:
    files: dict[str, bytes] = {}
    warnings: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            count = total = 0
            for info in archive:
                count += 1
                if count > limits.max_members:
                    raise Refused(f"{filename}: more than {limits.max_members} members; refused")
                if info.isdir():
                    continue
                if not info.isfile():
                    raise Refused(f"{filename}: member {info.name[:80]!r} is a link or a device; refused")
                name = _member_name(filename, info.name, files)
                if not _keep(filename, name, warnings):
                    continue
                total += info.size
                if total > limits.max_total:
                    raise Refused(f"{filename}: the members unpack to more than {limits.max_total} bytes; refused")
                member = archive.extractfile(info)
                if member is None:  # pragma: no cover - regular files always have data
                    raise Refused(f"{filename}: member {name} cannot be read")
                files[name] = member.read(info.size)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Refused(f"{filename}: not a readable tar archive ({exc})") from None
    return files, warnings


def _plain(filename: str, files: dict[str, bytes], warnings: list[str]) -> Unpacked:
    if not files:
        raise Refused(f"{filename}: no signature file inside (.hdb .hsb .ndb .ldb .fp .sfp .ign2 .yar ...)")
    only_yara = all(suffix_of(name) in YARA_EXTENSIONS for name in files)
    kind = SourceFormat.YARA if only_yara else SourceFormat.CLAMAV_PLAIN
    return Unpacked(kind.value, files, None, tuple(warnings))


def _is_misp(document: Any) -> bool:
    if isinstance(document, dict):
        return "Event" in document or "response" in document
    return isinstance(document, list) and bool(document) and all(isinstance(e, dict) and "Event" in e for e in document)


def _ioc(filename: str, data: bytes, source: str) -> Unpacked:
    suffix = suffix_of(filename)
    reader: Callable[[bytes, str], ioc.IocResult]
    if suffix == ".csv":
        kind, reader = SourceFormat.IOC_CSV, ioc.from_csv
    else:
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise Refused(f"{filename}: not valid JSON ({exc})") from None
        if isinstance(document, dict) and document.get("type") == "bundle":
            kind, reader = SourceFormat.IOC_STIX, ioc.from_stix
        elif _is_misp(document):
            kind, reader = SourceFormat.IOC_MISP, ioc.from_misp
        else:
            raise Refused(f"{filename}: JSON, but neither a STIX 2.1 bundle nor a MISP event")
    try:
        result = reader(data, source)
    except DatabaseError as exc:
        raise Refused(f"{filename}: {exc}") from None
    lines = result.lines
    if not lines:
        raise Refused(f"{filename}: no file hash found among the indicators")
    warnings = list(result.warnings)
    if result.skipped:
        warnings.append(f"{result.skipped} indicators gave no file hash and were left out")
    content = ("\n".join(lines) + "\n").encode()
    return Unpacked(kind.value, {f"{plain_name(source)}.hsb": content}, None, tuple(warnings))


def validate(files: Mapping[str, bytes]) -> int:
    """Load ``files`` with the engine (strict: one malformed signature refuses them all); their signature count.

    Raises:
        Refused: the engine's reason (file and line), or no usable signature at all.
    """
    loadable = {name: content for name, content in files.items() if suffix_of(name) in SIGNATURE_EXTENSIONS}
    if not loadable:
        raise Refused("no signature file to load")
    with tempfile.TemporaryDirectory(prefix="garrison-signatures-") as directory:
        root = Path(directory)
        for name, content in loadable.items():
            if not PLAIN_NAME.fullmatch(name):
                raise Refused(f"{name[:80]!r} is not a plain file name")
            (root / name).write_bytes(content)
        try:
            database = load_database([root], strict=True)
        except DatabaseError as exc:
            raise Refused(str(exc).replace(f"{root}/", "")) from None
    return database.report.signatures
