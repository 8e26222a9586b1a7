"""Staged rollout: which release and agent version each computer is offered, promotion from the canary group to
everyone, and pulling a release back.

A new release goes to the canary group first (when one is set). It is promoted to everyone after
``canary_hours`` if, since it was published, no canary reported an update failure and nobody allow-listed a
false positive; an admin can promote at once. Pulling a release back marks it (and any later ones) pulled and
publishes a new release with the content of the newest good one before it, so numbers never go backwards.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from garrison.protocol.updates import TargetInfo, UpdateOrder, agent_target, valid_version
from garrison.server.agents.models import Agent
from garrison.server.audit.service import Actor, record
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, Conflict, NotFound
from garrison.server.policies.models import AgentGroup, AllowedFile
from garrison.server.updates import releases
from garrison.server.updates.models import AgentRelease, Release, Stage
from garrison.server.updates.repository import UpdateRepository

#: Seconds a server process reuses what it offers agents before looking at the database again.
OFFER_TTL = 5.0


@dataclass(frozen=True, slots=True)
class Offer:
    """What agents are offered: the newest release for canaries and the newest general one for the others."""

    canary_group_id: int | None
    newest: int | None
    general: int | None
    agent_newest: str | None
    agent_general: str | None

    def for_agent(self, group_id: int | None) -> UpdateOrder:
        canary = self.canary_group_id is not None and group_id == self.canary_group_id
        return UpdateOrder(
            release=self.newest if canary else self.general,
            agent_version=self.agent_newest if canary else self.agent_general,
        )


class OfferCache:
    """Per-process cache of :class:`Offer` (heartbeats are frequent; offers change a few times a day)."""

    def __init__(self, ttl: float = OFFER_TTL) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value: tuple[float, Offer] | None = None

    def get(self, session: Session) -> Offer:
        now = time.monotonic()
        with self._lock:
            if self._value is not None and now - self._value[0] < self._ttl:
                return self._value[1]
        offer = current_offer(session)
        with self._lock:
            self._value = (now, offer)
        return offer

    def clear(self) -> None:
        with self._lock:
            self._value = None


def current_offer(session: Session) -> Offer:
    settings = releases.rollout_settings(session)

    def newest_release(*stages: Stage) -> int | None:
        return session.scalars(select(func.max(Release.number)).where(Release.stage.in_(stages))).one()

    def newest_agent(*stages: Stage) -> str | None:
        return session.scalars(
            select(AgentRelease.version)
            .where(AgentRelease.stage.in_(stages))
            .order_by(AgentRelease.created_at.desc())
            .limit(1)
        ).first()

    return Offer(
        canary_group_id=settings.canary_group_id,
        newest=newest_release(Stage.CANARY, Stage.GENERAL),
        general=newest_release(Stage.GENERAL),
        agent_newest=newest_agent(Stage.CANARY, Stage.GENERAL),
        agent_general=newest_agent(Stage.GENERAL),
    )


# -- settings -------------------------------------------------------------------------------------------------


def configure(
    session: Session, actor: Actor, *, canary_group_id: int | None, canary_hours: float, auto_promote: bool
) -> None:
    if canary_group_id is not None and session.get(AgentGroup, canary_group_id) is None:
        raise NotFound(f"no agent group {canary_group_id}")
    if not 0 <= canary_hours <= 24 * 30:
        raise BadRequest("the canary time must be between 0 and 720 hours")
    settings = releases.rollout_settings(session)
    settings.canary_group_id = canary_group_id
    settings.canary_hours = canary_hours
    settings.auto_promote = auto_promote
    releases.bump(session)
    record(
        session,
        actor,
        "rollout.configure",
        "rollout",
        1,
        canary_group_id=canary_group_id,
        canary_hours=canary_hours,
        auto_promote=auto_promote,
    )


# -- promotion ------------------------------------------------------------------------------------------------


def promote(session: Session, actor: Actor, number: int, now: datetime | None = None) -> Release:
    """Offer a canary release to everyone now."""
    release = releases.get(session, number)
    if release.stage != Stage.CANARY:
        raise Conflict(f"release {number} is {release.stage.value}, not a canary release")
    _promote(release, actor, now or utcnow())
    releases.bump(session)
    record(session, actor, "release.promote", "release", number)
    return release


def _promote(release: Release, actor: Actor, now: datetime) -> None:
    release.stage = Stage.GENERAL
    release.available_at = now
    release.promoted_by = actor.user_id
    release.hold_reason = ""


def canary_problems(session: Session, release: Release, canary_group_id: int | None) -> list[str]:
    """Why a canary release should not go to everyone yet (empty: nothing against it)."""
    since = release.created_at
    problems = []
    if canary_group_id is not None:
        failed = session.scalars(
            select(func.count())
            .select_from(Agent)
            .where(Agent.group_id == canary_group_id, Agent.update_error_at >= since, Agent.update_error != "")
        ).one()
        if failed:
            problems.append(f"{failed} canary computers reported an update failure")
    reported = session.scalars(select(func.count()).select_from(AllowedFile).where(AllowedFile.added_at >= since)).one()
    if reported:
        problems.append(f"{reported} false positives were allow-listed since it was published")
    return problems


def auto_promote(session: Session, actor: Actor, now: datetime | None = None) -> list[int]:
    """Promote the canary releases whose time has come and that nothing speaks against; returns their numbers."""
    now = now or utcnow()
    settings = releases.rollout_settings(session)
    if not settings.auto_promote:
        return []
    promoted = []
    due = now - timedelta(hours=settings.canary_hours)
    for release in session.scalars(select(Release).where(Release.stage == Stage.CANARY).order_by(Release.number)):
        if _aware(release.created_at) > due:
            continue
        problems = canary_problems(session, release, settings.canary_group_id)
        if problems:
            release.hold_reason = "; ".join(problems)
            continue
        _promote(release, actor, now)
        record(session, actor, "release.promote", "release", release.number, automatic=True)
        promoted.append(release.number)
    if promoted:
        releases.bump(session)
    return promoted


# -- pulling back ---------------------------------------------------------------------------------------------


def pull_back(
    session: Session, repo: UpdateRepository, actor: Actor, number: int, now: datetime | None = None
) -> Release:
    """Take release ``number`` (and any later ones) back; returns the new release with the earlier content."""
    now = now or utcnow()
    repo.lock(session)
    release = releases.get(session, number)
    if release.stage == Stage.PULLED:
        raise Conflict(f"release {number} was already pulled back")
    good = session.scalars(
        select(Release)
        .where(Release.number < number, Release.stage != Stage.PULLED)
        .order_by(Release.number.desc())
        .limit(1)
    ).first()
    if good is None:
        raise Conflict(f"there is no release before {number} to go back to")
    content = releases.content_of(repo, session, good.number, releases.ReleasePolicy())
    for later in session.scalars(select(Release).where(Release.number >= number, Release.stage != Stage.PULLED)):
        later.stage = Stage.PULLED
        later.pulled_at = now
        later.pulled_by = actor.user_id
    record(session, actor, "release.pull", "release", number, restores=good.number)
    restored = releases.publish(
        session,
        repo,
        content,
        actor=actor,
        reason=f"pull-back of release {number}: the content of release {good.number}",
        sources=good.sources,
        generation=good.generation,
        stage=Stage.GENERAL,
        restores=good.number,
        now=now,
    )
    if restored is None:  # cannot happen: the newest release is pulled now, so the content is "new"
        raise Conflict("nothing was published")
    return restored


# -- agent software -------------------------------------------------------------------------------------------


def add_agent_release(
    session: Session,
    repo: UpdateRepository,
    actor: Actor,
    version: str,
    wheel: bytes,
    *,
    notes: str = "",
    now: datetime | None = None,
) -> AgentRelease:
    """Offer an agent wheel (canary first when a canary group is set)."""
    now = now or utcnow()
    if not valid_version(version):
        raise BadRequest(f"{version!r} is not a version")
    if not wheel.startswith(b"PK"):
        raise BadRequest("an agent release must be a wheel (.whl, a zip file)")
    repo.lock(session)
    if session.get(AgentRelease, version) is not None:
        raise Conflict(f"agent version {version} was added already")
    path = agent_target(version)
    info = TargetInfo(kind="agent", version=version, published_at=now)
    repo.put_target(session, path, "agent", wheel, info.model_dump(mode="json"))
    canary = releases.rollout_settings(session).canary_group_id is not None
    stage = Stage.CANARY if canary else Stage.GENERAL
    row = AgentRelease(
        version=version,
        target_path=path,
        size=len(wheel),
        created_at=now,
        created_by=actor.user_id,
        notes=notes[:2000],
        stage=stage,
        available_at=None if canary else now,
    )
    session.add(row)
    repo.publish(session, now)
    releases.bump(session)
    record(session, actor, "agent_release.add", "agent_release", version, stage=stage.value, size=len(wheel))
    return row


def agent_releases(session: Session) -> list[AgentRelease]:
    return list(session.scalars(select(AgentRelease).order_by(AgentRelease.created_at.desc())))


def set_agent_stage(
    session: Session, actor: Actor, version: str, stage: Stage, now: datetime | None = None
) -> AgentRelease:
    """Promote an agent version to everyone, or pull it (agents that run it are offered the previous one)."""
    row = session.get(AgentRelease, version)
    if row is None:
        raise NotFound(f"no agent version {version}")
    row.stage = stage
    if stage == Stage.GENERAL:
        row.available_at = now or utcnow()
    releases.bump(session)
    record(session, actor, f"agent_release.{stage.value}", "agent_release", version)
    return row


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
