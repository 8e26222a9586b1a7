"""Local signatures made in the console (a file hash or a YARA rule, with who added it and why): they form the
built-in source ``local`` whose files are ``local.hsb`` and ``local.yar``."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence

import yara_x
from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.server.audit.service import Actor, record
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, Conflict, NotFound
from garrison.server.signatures import importers, service
from garrison.server.signatures.importers import Refused
from garrison.server.signatures.models import (
    LocalKind,
    LocalSignature,
    SignatureSource,
    SourceFormat,
    SourceKind,
)
from garrison.server.signatures.store import SourceStore

logger = logging.getLogger(__name__)


def list_local(session: Session, *, deleted: bool = False) -> Sequence[LocalSignature]:
    query = select(LocalSignature).order_by(LocalSignature.id.desc())
    if not deleted:
        query = query.where(LocalSignature.deleted_at.is_(None))
    return session.scalars(query).all()


def _local_source(session: Session, actor: Actor) -> SignatureSource:
    source = service.by_name(session, service.LOCAL)
    if source is None:
        source = SignatureSource(
            name=service.LOCAL,
            slug=service.LOCAL,
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
    digest = service.content_digest(entries) if files else ""
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
        service.bump(session)
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
    algorithm = service.HASH_LENGTHS.get(len(digest))
    if algorithm is None or not re.fullmatch(r"[0-9a-f]+", digest):
        raise BadRequest("the hash must be an MD5 (32), SHA-1 (40) or SHA-256 (64) in hexadecimal")
    name = name.strip()
    if not service.SIGNATURE_NAME.fullmatch(name):
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
    if not rule or len(rule.encode()) > service.MAX_RULE:
        raise BadRequest(f"a YARA rule has 1 to {service.MAX_RULE} bytes")
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
