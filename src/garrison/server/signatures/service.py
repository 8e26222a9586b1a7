"""Signature sources: create them, import new versions, enable, disable and delete them; and what the releases side
reads. Files dropped in the watched directory and upstream URLs are in :mod:`.feeds`, the console's own signatures
in :mod:`.local`.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from garrison.server.audit.service import Actor, record
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, Conflict, NotFound
from garrison.server.signatures import importers
from garrison.server.signatures.importers import ContainerKeys, ImportLimits, Refused
from garrison.server.signatures.models import (
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


def bump(session: Session) -> None:
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


def content_digest(files: dict[str, str]) -> str:
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
            changes["origin"] = safe_url(origin)
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
            bump(session)
        session.flush()
        action = "signature_source.enable" if enabled else "signature_source.disable"
        record(session, actor, action, "signature_source", source.id, name=source.name)
    return source


def delete_source(session: Session, actor: Actor, source_id: int) -> None:
    source = get_source(session, source_id)
    if source.kind is SourceKind.LOCAL:
        raise Conflict("the local source is built in; delete its signatures instead, or disable it")
    if source.enabled and source.files:
        bump(session)
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


def refuse(session: Session, actor: Actor, source: SignatureSource, refused: Refused, filename: str) -> None:
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
        refuse(session, actor, source, refused, filename)
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
    digest = content_digest(entries)
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
        bump(session)
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


def inbox(data_dir: Path) -> Path:
    """The default watched directory: ``data_dir/signature-inbox``."""
    return Path(data_dir) / INBOX


def safe_url(url: str) -> str:
    """``url`` without user and password, for the audit log and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
