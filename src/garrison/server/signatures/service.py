"""Signature sources: create them, import new versions (uploaded, dropped in the watched directory, fetched from a
URL), enable, disable and delete them; the console's local signatures; and what the releases side reads.

Every import goes through one path (:func:`import_file`): unpack (:mod:`.importers`), validate with the engine,
then — only when the content really changed — store the files and bump the generation. A refused import changes
nothing but the source's ``last_error`` and the audit log; callers that answer with the refusal commit those first
(see :func:`import_file`). Every change is a province administrator's (checked at the edge) and is audited.

The contract with the releases side: :func:`content`, :func:`summary` and :func:`generation`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yara_x
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from garrison.server.audit.service import SYSTEM, Actor, record
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, Conflict, NotFound
from garrison.server.signatures import importers
from garrison.server.signatures.importers import ContainerKeys, ImportLimits, Refused
from garrison.server.signatures.models import (
    LocalKind,
    LocalSignature,
    SignatureSource,
    SignatureState,
    SourceFormat,
    SourceKind,
)
from garrison.server.signatures.store import SourceStore

logger = logging.getLogger(__name__)

LOCAL = "local"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SIGNATURE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
HASH_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256"}
MAX_RULE = 64 * 1024
#: A file dropped in the watched directory is imported once it is this old and its size stopped changing.
SETTLE_SECONDS = 5.0
INBOX = "signature-inbox"  # the watched directory under data_dir
IMPORTED, REFUSED = "imported", "refused"


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: ``changed`` is False when the content was already the source's."""

    source: str
    changed: bool
    version: str
    signatures: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WatchedResult:
    """One file of the watched directory: ``imported``, ``unchanged``, ``refused`` (with the reason) or ``waiting``
    (still being written: left for the next pass)."""

    file: str
    outcome: str
    source: str | None = None
    reason: str = ""
    warnings: tuple[str, ...] = field(default=())


# -- the generation -------------------------------------------------------------------------------------------


def generation(session: Session) -> int:
    """The current signature generation: it grows with every change of what :func:`content` returns."""
    return session.scalar(select(SignatureState.generation).where(SignatureState.id == 1)) or 0


def _bump(session: Session) -> None:
    session.execute(
        update(SignatureState).where(SignatureState.id == 1).values(generation=SignatureState.generation + 1)
    )


# -- reading --------------------------------------------------------------------------------------------------


def slug_of(name: str) -> str:
    """The prefix of a source's files in a release: lower-case letters, digits and ``-``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "source"


def list_sources(session: Session) -> Sequence[SignatureSource]:
    return session.scalars(select(SignatureSource).order_by(SignatureSource.name)).all()


def get_source(session: Session, source_id: int) -> SignatureSource:
    source = session.get(SignatureSource, source_id)
    if source is None:
        raise NotFound(f"no signature source {source_id}")
    return source


def by_name(session: Session, name: str) -> SignatureSource | None:
    return session.scalar(select(SignatureSource).where(SignatureSource.name == name))


def files_of(store: SourceStore, source: SignatureSource) -> dict[str, bytes]:
    """A source's current files, read back from the store."""
    return {name: store.get(str(entry["sha256"])) for name, entry in sorted(source.files.items())}


def _bundle_name(source: SignatureSource, name: str) -> str:
    return name if source.kind is SourceKind.LOCAL else f"{source.slug}-{name}"


def content(session: Session, store: SourceStore) -> dict[str, bytes]:
    """The files of every enabled source and the local signatures, by bundle file name.

    A source's file ``main.hdb`` becomes ``<source slug>-main.hdb``; the local signatures are ``local.hsb`` and
    ``local.yar``. Only signature files are included (not a container's ``COPYING`` or ``.info`` manifest).
    """
    bundle: dict[str, bytes] = {}
    for source in list_sources(session):
        if not source.enabled:
            continue
        for name, data in files_of(store, source).items():
            if importers.suffix_of(name) in importers.SIGNATURE_EXTENSIONS:
                bundle[_bundle_name(source, name)] = data
    return bundle


def summary(session: Session) -> list[dict[str, Any]]:
    """What the enabled sources hold, as recorded with each release."""
    return [
        {
            "name": source.name,
            "kind": source.kind.value,
            "version": source.version,
            "signatures": source.signatures,
            "sha256": source.content_sha256,
        }
        for source in list_sources(session)
        if source.enabled and source.files
    ]


def _content_digest(files: dict[str, str]) -> str:
    """One SHA-256 for a set of files (by name and content digest)."""
    lines = "".join(f"{name}\0{sha256}\n" for name, sha256 in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


# -- creating and changing sources ----------------------------------------------------------------------------


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME.fullmatch(name):
        raise BadRequest(
            "a source name has 1 to 64 letters, digits, '.', '_' or '-', and starts with a letter or digit"
        )
    return name


def _check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        raise BadRequest("the address must be an http:// or https:// URL")
    return url


def _unique(session: Session, name: str) -> str:
    slug = slug_of(name)
    if name.lower() == LOCAL or slug == LOCAL:
        raise Conflict("the name 'local' is kept for the console's local signatures")
    taken = session.scalar(
        select(SignatureSource.name).where((SignatureSource.name == name) | (SignatureSource.slug == slug))
    )
    if taken is not None:
        raise Conflict(f"a signature source named {taken!r} already exists")
    return slug


def create_source(
    session: Session,
    store: SourceStore,
    actor: Actor,
    *,
    name: str,
    kind: SourceKind,
    origin: str = "",
    licence: str = "",
    upload: tuple[str, bytes] | None = None,
    keys: ContainerKeys | None = None,
    limits: ImportLimits | None = None,
) -> tuple[SignatureSource, ImportResult | None]:
    """A new source; with ``upload`` (a file name and its bytes) its first version, validated first: a refused
    file creates nothing (the refusal is audited; raises :class:`Refused`)."""
    name = check_name(name)
    if kind is SourceKind.LOCAL:
        raise BadRequest("the local source is built in; add local signatures instead")
    if kind is SourceKind.UPSTREAM:
        origin = _check_url(origin)
    elif kind is SourceKind.UPLOAD and upload is None:
        raise BadRequest("an uploaded source needs its file")
    slug = _unique(session, name)
    unpacked = None
    if upload is not None:
        filename, data = upload
        try:
            if importers.is_cdiff(filename):
                raise Refused(f"{filename}: a .cdiff updates an existing ClamAV database source; import the .cvd first")
            unpacked, count = _unpack(filename, data, name, keys, limits)
        except Refused as refused:
            record(session, actor, "signature_source.refused", "signature_source", None, name=name, reason=str(refused))
            raise
        origin = origin.strip() or (filename if kind is not SourceKind.UPSTREAM else origin)
    source = SignatureSource(
        name=name,
        slug=slug,
        kind=kind,
        origin=origin.strip()[:2048],
        format=unpacked.format if unpacked else "",
        version="",
        licence=licence.strip(),
        enabled=True,
        signatures=0,
        files={},
        created_by=actor.user_id,
        created_by_name=actor.name,
    )
    session.add(source)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a signature source named {name!r} already exists") from None
    record(session, actor, "signature_source.create", "signature_source", source.id, name=name, kind=kind.value)
    result = None
    if upload is not None and unpacked is not None:
        result = _accept(session, store, actor, source, upload[1], unpacked, count)
    return source, result


def update_source(
    session: Session, actor: Actor, source_id: int, *, origin: str | None = None, licence: str | None = None
) -> SignatureSource:
    """Change where a source comes from (an upstream source's URL) or its licence note."""
    source = get_source(session, source_id)
    if source.kind is SourceKind.LOCAL:
        raise BadRequest("the local source has no origin or licence to change")
    changes: dict[str, Any] = {}
    if origin is not None:
        origin = _check_url(origin) if source.kind is SourceKind.UPSTREAM else origin.strip()[:2048]
        if origin != source.origin:
            source.origin, source.download_sha256 = origin, ""
            changes["origin"] = _safe_url(origin)
    if licence is not None and licence.strip() != source.licence:
        source.licence = licence.strip()
        changes["licence"] = True
    if changes:
        session.flush()
        record(session, actor, "signature_source.update", "signature_source", source.id, name=source.name, **changes)
    return source


def set_enabled(session: Session, actor: Actor, source_id: int, enabled: bool) -> SignatureSource:
    source = get_source(session, source_id)
    if source.enabled != enabled:
        source.enabled = enabled
        if source.files:
            _bump(session)
        session.flush()
        action = "signature_source.enable" if enabled else "signature_source.disable"
        record(session, actor, action, "signature_source", source.id, name=source.name)
    return source


def delete_source(session: Session, actor: Actor, source_id: int) -> None:
    source = get_source(session, source_id)
    if source.kind is SourceKind.LOCAL:
        raise Conflict("the local source is built in; delete its signatures instead, or disable it")
    if source.enabled and source.files:
        _bump(session)
    record(
        session,
        actor,
        "signature_source.delete",
        "signature_source",
        source.id,
        name=source.name,
        version=source.version,
        sha256=source.content_sha256,
    )
    session.delete(source)
    session.flush()


# -- importing ------------------------------------------------------------------------------------------------


def _unpack(
    filename: str, data: bytes, name: str, keys: ContainerKeys | None, limits: ImportLimits | None
) -> tuple[importers.Unpacked, int]:
    unpacked = importers.unpack(
        filename, data, source=name, keys=keys or ContainerKeys(), limits=limits or ImportLimits()
    )
    return unpacked, importers.validate(unpacked.files)


def _refuse(session: Session, actor: Actor, source: SignatureSource, refused: Refused, filename: str) -> None:
    source.last_error = refused.message
    source.last_error_at = utcnow()
    session.flush()
    record(
        session,
        actor,
        "signature_source.refused",
        "signature_source",
        source.id,
        name=source.name,
        file=filename[:255],
        reason=refused.message[:2000],
    )


def import_file(
    session: Session,
    store: SourceStore,
    actor: Actor,
    source: SignatureSource,
    filename: str,
    data: bytes,
    *,
    keys: ContainerKeys | None = None,
    limits: ImportLimits | None = None,
) -> ImportResult:
    """Import a new version of ``source`` from ``filename`` (a ``.cdiff`` applies to its current files).

    The same bytes as the last import, or files equal to the current ones, change nothing. A refused file keeps
    the previous files: the reason goes to ``source.last_error`` and the audit log, then :class:`Refused` is raised
    — the caller commits before answering 400, or the record of the refusal is rolled back with the request.
    """
    if source.kind is SourceKind.LOCAL:
        raise BadRequest("the local source is made of local signatures, not of imported files")
    digest = hashlib.sha256(data).hexdigest()
    if digest == source.download_sha256 and source.last_error is None and source.files:
        return ImportResult(source.name, False, source.version, source.signatures)
    try:
        if importers.is_cdiff(filename):
            if source.format != SourceFormat.CLAMAV_CVD.value or not source.files:
                raise Refused(f"{filename}: a .cdiff only applies to a ClamAV database (.cvd) source")
            current = int(source.version) if source.version.isdigit() else None
            unpacked = importers.apply_cdiff(
                filename, data, files=files_of(store, source), version=current, keys=keys or ContainerKeys()
            )
            count = importers.validate(unpacked.files)
        else:
            unpacked, count = _unpack(filename, data, source.name, keys, limits)
        older = unpacked.version is not None and source.version.isdigit() and unpacked.version < int(source.version)
        if older and source.format == unpacked.format:
            raise Refused(f"{filename}: version {unpacked.version} is older than the source's version {source.version}")
    except Refused as refused:
        _refuse(session, actor, source, refused, filename)
        raise
    source.download_sha256 = digest
    return _accept(session, store, actor, source, data, unpacked, count, filename=filename)


def _accept(
    session: Session,
    store: SourceStore,
    actor: Actor,
    source: SignatureSource,
    data: bytes,
    unpacked: importers.Unpacked,
    count: int,
    *,
    filename: str = "",
) -> ImportResult:
    source.download_sha256 = hashlib.sha256(data).hexdigest()
    entries = {name: hashlib.sha256(content).hexdigest() for name, content in unpacked.files.items()}
    digest = _content_digest(entries)
    source.last_error = None
    source.last_error_at = None
    if digest == source.content_sha256:
        session.flush()
        return ImportResult(source.name, False, source.version, source.signatures, unpacked.warnings)
    for content in unpacked.files.values():
        store.put(content)
    source.files = {name: {"sha256": sha, "size": len(unpacked.files[name])} for name, sha in sorted(entries.items())}
    source.content_sha256 = digest
    source.format = unpacked.format
    if unpacked.version is not None:
        source.version = str(unpacked.version)
    else:
        source.version = str(int(source.version) + 1 if source.version.isdigit() else 1)
    source.signatures = count
    source.updated_at = utcnow()
    if source.enabled:
        _bump(session)
    session.flush()
    record(
        session,
        actor,
        "signature_source.import",
        "signature_source",
        source.id,
        name=source.name,
        file=filename[:255],
        version=source.version,
        signatures=count,
        sha256=digest,
    )
    return ImportResult(source.name, True, source.version, count, unpacked.warnings)


def upload(
    session: Session,
    store: SourceStore,
    actor: Actor,
    source_id: int,
    filename: str,
    data: bytes,
    *,
    keys: ContainerKeys | None = None,
    limits: ImportLimits | None = None,
) -> ImportResult:
    """A new version of a source, uploaded by a person (see :func:`import_file`)."""
    return import_file(session, store, actor, get_source(session, source_id), filename, data, keys=keys, limits=limits)


# -- the watched directory ------------------------------------------------------------------------------------


def _source_for_file(session: Session, filename: str) -> SignatureSource | None:
    if importers.is_cdiff(filename):
        database = importers.cdiff_database(filename)
        for source in list_sources(session):
            if source.format == SourceFormat.CLAMAV_CVD.value and (
                f"{database}.info" in source.files or source.name == database
            ):
                return source
        return None
    by_origin = session.scalar(
        select(SignatureSource)
        .where(SignatureSource.origin == filename, SignatureSource.kind == SourceKind.WATCHED)
        .order_by(SignatureSource.id)
    )
    return by_origin or by_name(session, _stem_name(filename))


def _stem_name(filename: str) -> str:
    stem = filename
    suffix = importers.suffix_of(filename)
    if suffix and stem.lower().endswith(suffix):
        stem = stem[: -len(suffix)]
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).lstrip("._-")[:64]
    return cleaned or "watched"


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(mode=0o750, exist_ok=True)
    target = folder / path.name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = folder / f"{stamp}-{path.name}"
    shutil.move(path, target)
    return target


def import_watched(
    session: Session,
    store: SourceStore,
    directory: Path,
    actor: Actor | None = None,
    *,
    keys: ContainerKeys | None = None,
    limits: ImportLimits | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> list[WatchedResult]:
    """Import every file dropped in ``directory`` (for networks without internet access).

    The source is the one the file came from before (same file name), or the one named after the file's stem,
    created as a *watched* source when new; a ``.cdiff`` applies to the source of its database. An imported (or
    unchanged) file moves to ``directory/imported/``; a refused one to ``directory/refused/`` with
    ``<file>.reason.txt`` beside it. A file younger than ``settle_seconds`` or whose size or time changes while it
    is read is still being written: it stays for the next pass. Each file is imported in a savepoint of its own.
    """
    actor = actor or SYSTEM
    directory = Path(directory)
    if not directory.is_dir():
        return []
    results: list[WatchedResult] = []
    for path in sorted(directory.iterdir(), key=lambda p: p.name):
        if path.name.startswith(".") or not path.is_file() or path.is_symlink():
            continue
        before = path.stat()
        if time.time() - before.st_mtime < settle_seconds:
            results.append(WatchedResult(path.name, "waiting"))
            continue
        data = path.read_bytes()
        after = path.stat()
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
            results.append(WatchedResult(path.name, "waiting"))
            continue
        results.append(_import_dropped(session, store, actor, directory, path, data, keys, limits))
    return results


def _import_dropped(
    session: Session,
    store: SourceStore,
    actor: Actor,
    directory: Path,
    path: Path,
    data: bytes,
    keys: ContainerKeys | None,
    limits: ImportLimits | None,
) -> WatchedResult:
    filename = path.name
    source = _source_for_file(session, filename)
    name = source.name if source else None
    try:
        with session.begin_nested():
            if source is None:
                if importers.is_cdiff(filename):
                    raise Refused(f"{filename}: no ClamAV database source for this cdiff; drop the whole .cvd first")
                name = check_name(_stem_name(filename))
                source, result = create_source(
                    session,
                    store,
                    actor,
                    name=name,
                    kind=SourceKind.WATCHED,
                    origin=filename,
                    upload=(filename, data),
                    keys=keys,
                    limits=limits,
                )
                assert result is not None  # noqa: S101 - an upload always gives a result
            else:
                result = import_file(session, store, actor, source, filename, data, keys=keys, limits=limits)
    except (Refused, BadRequest, Conflict) as refused:
        if source is not None and session.get(SignatureSource, source.id) is not None:
            _refuse(session, actor, source, Refused(refused.message), filename)
        else:
            record(
                session, actor, "signature_source.refused", "signature_source", None, name=name, file=filename,
                reason=refused.message[:2000],
            )  # fmt: skip
        moved = _move(path, directory / REFUSED)
        (moved.parent / f"{moved.name}.reason.txt").write_text(refused.message + "\n", encoding="utf-8")
        logger.info("refused the dropped signature file %s: %s", filename, refused.message)
        return WatchedResult(filename, "refused", name, refused.message)
    _move(path, directory / IMPORTED)
    return WatchedResult(filename, "imported" if result.changed else "unchanged", source.name, "", result.warnings)


def inbox(data_dir: Path) -> Path:
    """The default watched directory: ``data_dir/signature-inbox``."""
    return Path(data_dir) / INBOX


# -- upstream URLs --------------------------------------------------------------------------------------------

MAX_DOWNLOAD = 512 * 1024 * 1024


def default_get(url: str, *, timeout: float = 60.0, max_bytes: int = MAX_DOWNLOAD) -> bytes:
    """Download ``url`` (redirects followed, ``timeout`` seconds per step, at most ``max_bytes``)."""
    import httpx2  # noqa: PLC0415 - only fetching needs it, and the [server] extra does not install it

    with (
        httpx2.Client(timeout=timeout, follow_redirects=True) as client,
        client.stream("GET", url) as answer,
    ):
        if answer.status_code != 200:
            raise OSError(f"the server answered {answer.status_code}")
        declared = answer.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise OSError(f"the file is larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        for chunk in answer.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise OSError(f"the file is larger than {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _safe_url(url: str) -> str:
    """``url`` without user and password, for the audit log and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def fetch_upstream(
    session: Session,
    store: SourceStore,
    source: SignatureSource,
    get: Callable[[str], bytes] = default_get,
    *,
    actor: Actor | None = None,
    keys: ContainerKeys | None = None,
    limits: ImportLimits | None = None,
) -> ImportResult:
    """Fetch an upstream source's URL with ``get`` and import it like an upload (an unchanged download changes
    nothing). A failed download is recorded like a refused file and raises :class:`Refused`."""
    actor = actor or SYSTEM
    if source.kind is not SourceKind.UPSTREAM:
        raise BadRequest(f"the source {source.name!r} is not fetched from a URL")
    url = source.origin
    filename = PurePosixPath(urlsplit(url).path).name or source.name
    try:
        data = get(url)
    except Exception as exc:  # any failure of the injected getter is a failed download
        refused = Refused(f"the download from {_safe_url(url)} failed: {str(exc)[:500] or type(exc).__name__}")
        _refuse(session, actor, source, refused, filename)
        raise refused from None
    return import_file(session, store, actor, source, filename, data, keys=keys, limits=limits)


# -- local signatures -----------------------------------------------------------------------------------------


def list_local(session: Session, *, deleted: bool = False) -> Sequence[LocalSignature]:
    query = select(LocalSignature).order_by(LocalSignature.id.desc())
    if not deleted:
        query = query.where(LocalSignature.deleted_at.is_(None))
    return session.scalars(query).all()


def _local_source(session: Session, actor: Actor) -> SignatureSource:
    source = by_name(session, LOCAL)
    if source is None:
        source = SignatureSource(
            name=LOCAL,
            slug=LOCAL,
            kind=SourceKind.LOCAL,
            origin="",
            format=SourceFormat.LOCAL.value,
            version="0",
            licence="",
            enabled=True,
            signatures=0,
            files={},
            created_by=actor.user_id,
            created_by_name=actor.name,
        )
        session.add(source)
        session.flush()
    return source


def _hash_line(row: LocalSignature) -> str:
    if row.size is None:
        return f"{row.digest}:*:{row.name}:73"
    return f"{row.digest}:{row.size}:{row.name}"


def _rebuild_local(session: Session, store: SourceStore, actor: Actor) -> None:
    """Write ``local.hsb`` and ``local.yar`` from the local signatures; validated like any import."""
    source = _local_source(session, actor)
    rows = list(reversed(list_local(session)))
    hashes = [_hash_line(r) for r in rows if r.kind is LocalKind.HASH]
    rules = [r.rule or "" for r in rows if r.kind is LocalKind.YARA]
    files: dict[str, bytes] = {}
    if hashes:
        files["local.hsb"] = ("\n".join(hashes) + "\n").encode()
    if rules:
        files["local.yar"] = ("\n\n".join(rule.strip() for rule in rules) + "\n").encode()
    count = importers.validate(files) if files else 0
    entries = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    digest = _content_digest(entries) if files else ""
    if digest == source.content_sha256:
        return
    for data in files.values():
        store.put(data)
    source.files = {name: {"sha256": sha, "size": len(files[name])} for name, sha in sorted(entries.items())}
    source.content_sha256 = digest
    source.signatures = count
    source.version = str(int(source.version) + 1 if source.version.isdigit() else 1)
    source.updated_at = utcnow()
    if source.enabled:
        _bump(session)
    session.flush()


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise BadRequest("write why this signature is added (the reason is required)")
    return reason[:1024]


def add_local_hash(
    session: Session,
    store: SourceStore,
    actor: Actor,
    *,
    digest: str,
    name: str,
    reason: str,
    size: int | None = None,
) -> LocalSignature:
    """A file hash (MD5, SHA-1 or SHA-256, told by its length) every computer detects as ``name``."""
    digest = digest.strip().lower()
    algorithm = HASH_LENGTHS.get(len(digest))
    if algorithm is None or not re.fullmatch(r"[0-9a-f]+", digest):
        raise BadRequest("the hash must be an MD5 (32), SHA-1 (40) or SHA-256 (64) in hexadecimal")
    name = name.strip()
    if not SIGNATURE_NAME.fullmatch(name):
        raise BadRequest("a signature name has letters without accents, digits, '.', '_' and '-' only")
    if size is not None and size < 0:
        raise BadRequest("the size cannot be negative")
    reason = _check_reason(reason)
    taken = session.scalar(
        select(LocalSignature.id).where(LocalSignature.digest == digest, LocalSignature.deleted_at.is_(None))
    )
    if taken is not None:
        raise Conflict("this hash is already a local signature")
    row = LocalSignature(
        kind=LocalKind.HASH,
        name=name,
        algorithm=algorithm,
        digest=digest,
        size=size,
        reason=reason,
        added_by=actor.user_id,
        added_by_name=actor.name,
    )
    session.add(row)
    session.flush()
    _rebuild_local(session, store, actor)
    record(
        session, actor, "local_signature.add", "local_signature", row.id,
        kind="hash", name=name, algorithm=algorithm, digest=digest, size=size, reason=reason,
    )  # fmt: skip
    return row


_RULE_NAME = re.compile(r"^\s*(?:(?:private|global)\s+)*rule\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


def add_local_rule(session: Session, store: SourceStore, actor: Actor, *, rule: str, reason: str) -> LocalSignature:
    """A YARA rule (one, compiled alone first) every computer applies."""
    rule = rule.strip().replace("\r\n", "\n")
    if not rule or len(rule.encode()) > MAX_RULE:
        raise BadRequest(f"a YARA rule has 1 to {MAX_RULE} bytes")
    reason = _check_reason(reason)
    names = _RULE_NAME.findall(rule)
    if len(names) != 1:
        raise BadRequest("write exactly one YARA rule")
    try:
        yara_x.compile(rule)  # not a Compiler object: it must not outlive this thread
    except yara_x.CompileError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "it does not compile"
        raise BadRequest(f"the YARA rule does not compile: {first}") from None
    for other in list_local(session):
        if other.kind is LocalKind.YARA and other.name == names[0]:
            raise Conflict(f"a local YARA rule named {names[0]!r} already exists")
    row = LocalSignature(
        kind=LocalKind.YARA,
        name=names[0],
        rule=rule,
        reason=reason,
        added_by=actor.user_id,
        added_by_name=actor.name,
    )
    session.add(row)
    session.flush()
    try:
        _rebuild_local(session, store, actor)
    except Refused as refused:
        raise BadRequest(f"the YARA rule does not work with the other local rules: {refused.message}") from None
    record(session, actor, "local_signature.add", "local_signature", row.id, kind="yara", name=row.name, reason=reason)
    return row


def get_local(session: Session, signature_id: int) -> LocalSignature:
    row = session.get(LocalSignature, signature_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"no local signature {signature_id}")
    return row


def delete_local(session: Session, store: SourceStore, actor: Actor, signature_id: int) -> None:
    """Take a local signature out of ``local.hsb`` / ``local.yar`` (the row stays, marked deleted)."""
    row = get_local(session, signature_id)
    row.deleted_at = utcnow()
    row.deleted_by_name = actor.name
    session.flush()
    _rebuild_local(session, store, actor)
    record(
        session, actor, "local_signature.delete", "local_signature", row.id,
        kind=row.kind.value, name=row.name, digest=row.digest,
    )  # fmt: skip
