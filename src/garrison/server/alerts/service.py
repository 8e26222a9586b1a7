"""The alerts' background pass, and the history people read (scope-filtered).

:func:`run` is what the server runs every ``alerts_check_seconds``: evaluate every rule in one transaction, then
send what is due (:func:`deliver.deliver`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from garrison.server.alerts.deliver import deliver
from garrison.server.alerts.evaluate import evaluate
from garrison.server.alerts.models import AlertDelivery, AlertRecord, AlertRule
from garrison.server.auth.scope import Scope
from garrison.server.db import Database, utcnow
from garrison.server.settings import ServerSettings
from garrison.server.units import service as units
from garrison.server.updates import service as updates
from garrison.server.updates.repository import UpdateRepository

#: Alert records that are over, and sending attempts, are kept this long.
KEEP = timedelta(days=180)


def run(database: Database, settings: ServerSettings, repository: UpdateRepository, now: datetime | None = None) -> int:
    """One pass: evaluate, then send, then forget what is older than ``KEEP``. Returns how many messages were
    sent."""
    now = now or utcnow()
    with database.session() as session:
        notices = updates.notices(session, repository, now)
        evaluate(session, now, server_notices=notices)
    sent = sum(d.ok for d in deliver(database, settings, now))
    with database.session() as session:
        prune(session, now)
    return sent


def prune(session: Session, now: datetime) -> None:
    """Drop records that are over (or were one-off news) and attempts older than ``KEEP``. A record still true is
    kept whatever its age: it is what stops the same condition from being raised again."""
    cutoff = now - KEEP
    session.execute(delete(AlertRecord).where(AlertRecord.active.is_(False), AlertRecord.raised_at < cutoff))
    session.execute(delete(AlertDelivery).where(AlertDelivery.at < cutoff))


def _rule_ids(scope: Scope, unit_id: int | None, session: Session) -> list[int]:
    """Ids of the rules the history may show: those of units in the scope (or of one unit, 404 outside it)."""
    if unit_id is not None:
        unit = units.get(session, scope, unit_id)
        return list(session.scalars(select(AlertRule.id).where(AlertRule.unit_id == unit.id)))
    return list(session.scalars(units.within(select(AlertRule.id), scope, AlertRule.unit_id)))


def records(
    session: Session, scope: Scope, *, unit_id: int | None = None, kind: str | None = None, limit: int = 50,
    offset: int = 0,
) -> Sequence[AlertRecord]:  # fmt: skip
    """Alert records of the rules in the scope (a rule's records are about its unit's subtree), newest first."""
    ids = _rule_ids(scope, unit_id, session)
    query = select(AlertRecord).where(AlertRecord.rule_id.in_(ids))
    if kind:
        query = query.where(AlertRecord.kind == kind)
    query = query.order_by(AlertRecord.raised_at.desc(), AlertRecord.id.desc()).limit(limit).offset(offset)
    return session.scalars(query).all()


def deliveries(
    session: Session, scope: Scope, *, unit_id: int | None = None, limit: int = 50, offset: int = 0
) -> Sequence[AlertDelivery]:
    """Sending attempts of the rules in the scope, newest first."""
    ids = _rule_ids(scope, unit_id, session)
    query = select(AlertDelivery).where(AlertDelivery.rule_id.in_(ids))
    query = query.order_by(AlertDelivery.at.desc(), AlertDelivery.id.desc()).limit(limit).offset(offset)
    return session.scalars(query).all()
