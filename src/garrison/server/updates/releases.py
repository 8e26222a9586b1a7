"""Signature releases: the sources' combined content, checked, numbered, and published through the repository.

A release is published only when the content changed and the whole set compiles (a broken set is refused with
the engine's reason and the current release stays). Each release is listed in full and, where smaller, as deltas
from the few releases before it; agents pick the delta from what they have and check the result's digest.
Numbers only go up: taking a release back publishes a new one with the earlier content (:mod:`.rollout`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.engine import DatabaseError, load_database
from garrison.engine.signatures import bundle
from garrison.protocol.updates import TargetInfo, delta_target, full_target
from garrison.server.audit.service import Actor, record
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, NotFound
from garrison.server.updates.models import Release, RolloutSettings, Stage, UpdateTarget
from garrison.server.updates.repository import UpdateRepository

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReleasePolicy:
    """How many releases stay downloadable, and from how many earlier releases each gets a delta."""

    keep: int = 10
    delta_bases: int = 3
    max_content_bytes: int = 2 * 1024 * 1024 * 1024


class ReleaseRefused(BadRequest):
    """The signature set does not compile; the current release stays."""


def latest(session: Session) -> Release | None:
    return session.scalars(select(Release).order_by(Release.number.desc()).limit(1)).first()


def get(session: Session, number: int) -> Release:
    release = session.get(Release, number)
    if release is None:
        raise NotFound(f"no release {number}")
    return release


def listing(session: Session, limit: int = 50, offset: int = 0) -> list[Release]:
    return list(session.scalars(select(Release).order_by(Release.number.desc()).limit(limit).offset(offset)))


def rollout_settings(session: Session) -> RolloutSettings:
    row = session.get(RolloutSettings, 1)
    if row is None:
        row = RolloutSettings(id=1, canary_hours=24.0, auto_promote=True, generation=0)
        session.add(row)
        session.flush()
    return row


def bump(session: Session) -> None:
    """Tell every server process that what agents are offered changed."""
    settings = rollout_settings(session)
    settings.generation += 1
    settings.updated_at = utcnow()


def content_of(repo: UpdateRepository, session: Session, number: int, limits: ReleasePolicy) -> dict[str, bytes]:
    """The files of a published release, read back from its full target."""
    target = session.get(UpdateTarget, full_target(number))
    if target is None:
        raise NotFound(f"release {number} is no longer kept on this server")
    data = bundle.decompress(repo.load_target(target), limits.max_content_bytes)
    return bundle.unpack(data)


def compile_check(files: Mapping[str, bytes]) -> int:
    """Compile the set as an agent will; return how many signatures it has (raises :class:`ReleaseRefused`)."""
    with tempfile.TemporaryDirectory(prefix="garrison-release-") as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        try:
            database = load_database([tmp])
        except DatabaseError as exc:
            raise ReleaseRefused(f"the signature set does not compile, so it was not published: {exc}") from None
        return database.report.signatures


def publish(
    session: Session,
    repo: UpdateRepository,
    content: Mapping[str, bytes],
    *,
    actor: Actor,
    reason: str,
    sources: list[dict[str, Any]] | None = None,
    generation: int = 0,
    stage: Stage | None = None,
    restores: int | None = None,
    policy: ReleasePolicy | None = None,
    now: datetime | None = None,
) -> Release | None:
    """Publish ``content`` as the next release, unless it is what the latest release already holds (None then).

    Raises:
        ReleaseRefused: the set does not compile (nothing is published).
    """
    policy = policy or ReleasePolicy()
    now = now or utcnow()
    repo.lock(session)
    try:
        files = bundle.canonical(content)
    except DatabaseError as exc:
        raise ReleaseRefused(f"the signature set is not valid, so it was not published: {exc}") from None
    if not files:
        return None
    digest = bundle.digest(files)
    previous = latest(session)
    if previous is not None and previous.content_sha256 == digest and previous.stage != Stage.PULLED:
        return None
    signatures = compile_check(files)
    number = (previous.number if previous else 0) + 1
    tar = bundle.pack(files)
    compressed = bundle.compress(tar)
    info = TargetInfo(kind="signatures", release=number, content_sha256=digest, content_size=len(tar), published_at=now)
    repo.put_target(session, full_target(number), "signatures", compressed, info.model_dump(mode="json"))
    _add_deltas(session, repo, files, number, digest, len(compressed), policy)
    if stage is None:
        settings = rollout_settings(session)
        stage = Stage.CANARY if settings.canary_group_id is not None else Stage.GENERAL
    release = Release(
        number=number,
        created_at=now,
        created_by=actor.user_id,
        reason=reason[:2000],
        content_sha256=digest,
        content_size=len(tar),
        compressed_size=len(compressed),
        signatures=signatures,
        files=[{"name": name, "size": len(data)} for name, data in sorted(files.items())],
        sources=sources or [],
        generation=generation,
        stage=stage,
        available_at=now if stage == Stage.GENERAL else None,
        restores=restores,
    )
    session.add(release)
    _prune(session, repo, number, policy)
    repo.publish(session, now)
    bump(session)
    record(
        session,
        actor,
        "release.publish",
        "release",
        number,
        stage=stage.value,
        signatures=signatures,
        reason=reason[:200],
        restores=restores,
    )
    logger.info("published signature release %d (%s, %d signatures)", number, stage.value, signatures)
    return release


def _add_deltas(
    session: Session,
    repo: UpdateRepository,
    files: dict[str, bytes],
    number: int,
    digest: str,
    full_size: int,
    policy: ReleasePolicy,
) -> None:
    bases = session.scalars(
        select(Release.number)
        .where(Release.stage != Stage.PULLED)
        .order_by(Release.number.desc())
        .limit(policy.delta_bases)
    ).all()
    for base in bases:
        try:
            old = content_of(repo, session, base, policy)
        except (NotFound, DatabaseError, OSError) as exc:
            logger.warning("no delta from release %d: %s", base, exc)
            continue
        delta = bundle.make_delta(old, files)
        if len(delta) >= full_size:
            continue  # the full release is smaller: agents take that
        info = TargetInfo(kind="delta", base=base, release=number, content_sha256=digest)
        repo.put_target(session, delta_target(base, number), "delta", delta, info.model_dump(mode="json"))


def _prune(session: Session, repo: UpdateRepository, number: int, policy: ReleasePolicy) -> None:
    """Keep the newest ``policy.keep`` releases downloadable, and the deltas leading into them."""
    oldest_kept = number - policy.keep + 1
    # The release everyone is offered stays, however many canary releases came after it.
    general = session.scalars(
        select(Release.number).where(Release.stage == Stage.GENERAL).order_by(Release.number.desc()).limit(1)
    ).first()
    stale = []
    for target in session.scalars(select(UpdateTarget).where(UpdateTarget.kind.in_(("signatures", "delta")))):
        release = (target.custom.get("garrison") or {}).get("release")
        if isinstance(release, int) and release < oldest_kept and release != general:
            stale.append(target.path)
    repo.drop_targets(session, stale)
