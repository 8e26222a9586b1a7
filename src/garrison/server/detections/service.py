"""Detections: idempotent ingestion from agents, and triage by people."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, Table, and_, distinct, func, not_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from garrison.protocol.events import Action, BatchAck, EventBatch
from garrison.server.agents.models import Agent
from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.detections.models import Detection, Triage
from garrison.server.errors import Forbidden, NotFound
from garrison.server.units import service as units

# -- what became of a detection (the statistics count these; the console lists them) --------------------------

#: The agent's actions that remove the file when they succeed.
REMOVING_ACTIONS = (Action.QUARANTINE.value, Action.DELETE.value)


def removed() -> ColumnElement[bool]:
    """The agent quarantined or deleted the file when it found it, successfully."""
    return and_(Detection.action.in_(REMOVING_ACTIONS), Detection.action_ok.is_(True))


def _removed_by(action: Action) -> ColumnElement[bool]:
    return and_(Detection.action == action.value, Detection.action_ok.is_(True))


def action_failed() -> ColumnElement[bool]:
    """The agent tried to quarantine or delete the file, and could not."""
    return and_(Detection.action.in_(REMOVING_ACTIONS), Detection.action_ok.is_(False))


def resolved() -> ColumnElement[bool]:
    """Not removed by the agent, but marked resolved by a person (dealt with by hand)."""
    return and_(not_(removed()), Detection.triage == Triage.RESOLVED)


def outstanding() -> ColumnElement[bool]:
    """Not removed by the agent and still to review: neither resolved nor a false alarm."""
    return and_(not_(removed()), Detection.triage == Triage.NEW)


#: The outcomes a list can be filtered by, with their conditions (the statistics' definitions).
OUTCOMES = {
    "removed": removed,
    "quarantined": lambda: _removed_by(Action.QUARANTINE),
    "deleted": lambda: _removed_by(Action.DELETE),
    "failed": action_failed,
    "resolved": resolved,
    "outstanding": outstanding,
}


def ingest(session: Session, agent: Agent, batch: EventBatch) -> BatchAck:
    """Store a batch of detections; ids already stored are skipped, so a retried batch changes nothing.

    The insert itself ignores conflicts, so two deliveries of the same batch racing each other cannot both
    insert a row or fail on the primary key. It is one statement run with many parameter sets (the driver
    pipelines them), on the table rather than through the ORM: building one 18-column VALUES clause per batch
    cost about ten times the CPU (bench/fleet.py, docs/performance.md "Fleet").
    """
    if not batch.detections:
        return BatchAck(accepted=[])
    ids = [str(event.id) for event in batch.detections]
    known = set(session.scalars(select(Detection.id).where(Detection.id.in_(ids))))
    received = utcnow()
    rows = [
        {
            "id": str(event.id),
            "agent_id": agent.id,
            "unit_id": agent.unit_id,
            # In UTC: SQLite keeps a time's wall clock and drops its offset, so "09:00+07:00" would become 09:00 UTC
            # (a time without an offset is taken as UTC, as agents send it).
            "occurred_at": _utc(event.occurred_at),
            "received_at": received,
            "path": event.path,
            "chain": event.chain,
            "name": event.name,
            "kind": event.kind,
            "database": event.database,
            "signature": event.signature,
            "md5": event.md5,
            "sha256": event.sha256,
            "size": event.size,
            "action": event.action.value,
            "action_ok": event.action_ok,
            "action_detail": event.action_detail,
            "triage": Triage.NEW.value,
        }
        for event in batch.detections
        if str(event.id) not in known
    ]
    if rows:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        table = cast("Table", Detection.__table__)
        session.execute(insert(table).on_conflict_do_nothing(index_elements=["id"]), rows)
    return BatchAck(accepted=[uuid.UUID(i) for i in dict.fromkeys(ids)], duplicates=len(ids) - len(rows))


def list_detections(
    session: Session, scope: Scope, *, triage: Triage | None = None, limit: int = 100, offset: int = 0
) -> Sequence[Detection]:
    query = units.within(select(Detection), scope, Detection.unit_id)
    if triage is not None:
        query = query.where(Detection.triage == triage)
    return session.scalars(query.order_by(Detection.occurred_at.desc()).limit(limit).offset(offset)).all()


def _filtered(
    query: Select[Any],
    scope: Scope,
    triage: Triage | None,
    agent_id: str | None,
    since: datetime | None,
    until: datetime | None = None,
    name: str | None = None,
    outcome: str | None = None,
) -> Select[Any]:
    query = units.within(query, scope, Detection.unit_id)
    if outcome is not None:
        query = query.where(OUTCOMES[outcome]())
    if triage is not None:
        query = query.where(Detection.triage == triage)
    if agent_id is not None:
        query = query.where(Detection.agent_id == agent_id)
    if since is not None:
        query = query.where(Detection.occurred_at >= since)
    if until is not None:
        query = query.where(Detection.occurred_at < until)
    if name is not None:
        query = query.where(Detection.name == name)
    return query


def search(
    session: Session,
    scope: Scope,
    *,
    triage: Triage | None = None,
    agent_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    name: str | None = None,
    outcome: str | None = None,
    limit: int = 100,
    offset: int = 0,
    order: Sequence[ColumnElement[Any]] = (),
) -> Sequence[Detection]:
    """Read-only: the detections in ``scope`` matching the filters (found in [since, until); ``outcome`` one of
    :data:`OUTCOMES`), newest first unless ``order`` (``ORDER BY`` clauses, such as the console's sortable columns)
    says otherwise."""
    query = _filtered(select(Detection), scope, triage, agent_id, since, until, name, outcome)
    query = query.order_by(*order) if order else query.order_by(Detection.occurred_at.desc())
    return session.scalars(query.limit(limit).offset(offset)).all()


def count(
    session: Session,
    scope: Scope,
    *,
    triage: Triage | None = None,
    agent_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    name: str | None = None,
    outcome: str | None = None,
) -> int:
    """Read-only: how many detections in ``scope`` match the filters."""
    query = _filtered(select(func.count(Detection.id)), scope, triage, agent_id, since, until, name, outcome)
    return session.scalar(query) or 0


def _local_day(session: Session, zone: ZoneInfo) -> ColumnElement[Any]:
    """The calendar day of ``occurred_at`` in ``zone``, computed by the database.

    PostgreSQL converts with the zone's rules; SQLite (times stored as UTC text) adds the zone's current offset,
    exact for zones without daylight saving time such as Vietnam's.
    """
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone(zone.key, Detection.occurred_at))
    offset = utcnow().astimezone(zone).utcoffset()
    seconds = int(offset.total_seconds()) if offset else 0
    return func.date(Detection.occurred_at, f"{seconds:+d} seconds")


def count_by_day(
    session: Session, scope: Scope, *, since: datetime, until: datetime, zone: ZoneInfo
) -> dict[date, int]:
    """Read-only: how many detections in ``scope`` were found each day (in ``zone``) in [since, until).

    Counted by the database with one GROUP BY; days without detections are absent.
    """
    inner = _filtered(
        select(_local_day(session, zone).label("day"), Detection.id), scope, None, None, since, until
    ).subquery()
    query = select(inner.c.day, func.count(inner.c.id)).group_by(inner.c.day)
    return {date.fromisoformat(str(day)[:10]): n for day, n in session.execute(query)}


@dataclass(frozen=True, slots=True)
class NameCount:
    """A detection name with how often it was found and on how many computers."""

    name: str
    detections: int
    computers: int


def top_names(session: Session, scope: Scope, *, since: datetime, limit: int = 10) -> list[NameCount]:
    """Read-only: the most frequent detection names in ``scope`` since ``since`` (ties by name)."""
    inner = _filtered(select(Detection), scope, None, None, since).subquery()
    found = func.count(inner.c.id)
    query = select(inner.c.name, found, func.count(distinct(inner.c.agent_id)))
    query = query.group_by(inner.c.name).order_by(found.desc(), inner.c.name).limit(limit)
    return [NameCount(name, n, computers) for name, n, computers in session.execute(query)]


def agents_infected(session: Session, scope: Scope, *, since: datetime, until: datetime) -> set[str]:
    """Read-only: the ids of the agents in ``scope`` where malware was found in [since, until), false alarms left
    out (the statistics' infected computers)."""
    query = _filtered(select(Detection.agent_id).distinct(), scope, None, None, since, until)
    return set(session.scalars(query.where(Detection.triage != Triage.FALSE_POSITIVE)))


def agents_with(session: Session, scope: Scope, *, triage: Triage) -> set[str]:
    """Read-only: the ids of the agents in ``scope`` with at least one detection in the ``triage`` state."""
    query = _filtered(select(Detection.agent_id).distinct(), scope, triage, None, None)
    return set(session.scalars(query))


def get(session: Session, scope: Scope, detection_id: str) -> Detection:
    found = session.scalar(
        units.within(select(Detection), scope, Detection.unit_id).where(Detection.id == detection_id)
    )
    if found is None:
        raise NotFound(f"no detection {detection_id}")
    return found


def set_triage(session: Session, scope: Scope, actor: Actor, detection_id: str, triage: Triage) -> Detection:
    if not scope.writable:
        raise Forbidden("read-only access")
    detection = get(session, scope, detection_id)
    previous = detection.triage
    detection.triage = triage
    detection.triaged_by = actor.user_id
    detection.triaged_at = utcnow()
    record(
        session, actor, "detection.triage", "detection", detection.id, unit_id=detection.unit_id,
        previous=previous.value, triage=triage.value,
    )  # fmt: skip
    return detection


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
