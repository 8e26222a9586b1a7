"""One evaluation pass: what each rule finds in its unit's subtree becomes alert records.

Kinds and how they become news (``raised_at``):

- new detections: every detection received since the rule's watermark (``received_at``, then id), grouped per
  computer and malware name in the pass; the watermark stops ``SETTLE`` before the pass, so that a detection whose
  transaction commits late is not skipped;
- outbreak: the same malware name (or the same SHA-256 under other names) on at least N computers within T
  minutes; raised once, then kept up to date while it lasts, raised again only after it ended;
- a computer offline longer than the threshold, signatures older than the threshold, an update error reported
  by a computer or an update-channel warning of the server (top units' rules only): raised when it becomes true,
  raised again only after it cleared;
- reporting deadline near: the units under the rule that ``reports.calendar.due_reminders`` names today, once per
  reminder day.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from garrison.server.agents.models import Agent
from garrison.server.agents.service import aware
from garrison.server.alerts.models import AlertKind, AlertRecord, AlertRule
from garrison.server.detections.models import Detection, Triage
from garrison.server.reports import calendar
from garrison.server.units.models import Unit
from garrison.server.updates import service as updates

TICK = timedelta(microseconds=1)
#: Detections received this close to the pass wait for the next one (a request may still be committing them).
SETTLE = timedelta(seconds=30)
#: At most this many new detections per rule and pass; the rest come in the next pass.
BATCH = 5000
#: Computers named in an outbreak's details.
HOSTS_SHOWN = 10


@dataclass(frozen=True, slots=True)
class Found:
    """A condition that holds now: where, what to call it, and what to show about it."""

    unit_id: int
    subject: str
    details: dict[str, Any]
    first_seen: datetime
    count: int = 1


def evaluate(
    session: Session, now: datetime, *, server_notices: Sequence[updates.Notice] = (), reminders: bool = True
) -> int:
    """Evaluate every rule at ``now``; returns how many records were raised. The caller commits.

    The rules' rows are locked first, so that two server processes evaluate one after the other."""
    raised = 0
    rules = session.scalars(select(AlertRule).order_by(AlertRule.id).with_for_update()).all()
    due = calendar.due_reminders(session, now) if reminders and rules else []
    for rule in rules:
        unit = session.get(Unit, rule.unit_id)
        if unit is None:
            continue
        # Always after the previous pass, even when another process's clock is a little ahead of ours: a record
        # raised at or before a moment a recipient was already sent up to would never reach it.
        moment = max(now, aware(rule.evaluated_at) + TICK) if rule.evaluated_at else now
        kinds = set(rule.kinds)
        raised += _new_detections(session, rule, unit, moment, AlertKind.NEW_DETECTION in kinds)
        if AlertKind.OUTBREAK in kinds:
            raised += _outbreaks(session, rule, unit, moment)
        for kind, condition, describe in _agent_conditions(rule, moment):
            if kind in kinds:
                found = _agents(session, unit, condition, describe)
                raised += _track(session, rule, kind, found, moment)
        if AlertKind.UPDATE_FAILING in kinds and unit.parent_id is None:
            notices = {
                f"notice:{n.code}": Found(unit.id, n.message[:255], {"code": n.code, "message": n.message}, moment)
                for n in server_notices
            }
            raised += _track(session, rule, AlertKind.UPDATE_FAILING, notices, moment, prefix="notice:")
        if AlertKind.DEADLINE in kinds:
            raised += _deadlines(session, rule, unit, due, moment)
        rule.evaluated_at = moment
    session.flush()
    return raised


# -- new detections -------------------------------------------------------------------------------------------


def _new_detections(session: Session, rule: AlertRule, unit: Unit, moment: datetime, enabled: bool) -> int:
    seen_at, seen_id = aware(rule.detections_seen_at), rule.detections_seen_id
    rows = session.execute(
        select(Detection.id, Detection.received_at, Detection.agent_id, Detection.unit_id, Detection.name)
        .add_columns(Detection.sha256, Detection.occurred_at, Agent.hostname)
        .join(Agent, Agent.id == Detection.agent_id)
        .join(Unit, Unit.id == Detection.unit_id)
        .where(
            Unit.path.startswith(unit.path),
            Detection.received_at <= moment - SETTLE,
            or_(Detection.received_at > seen_at, and_(Detection.received_at == seen_at, Detection.id > seen_id)),
        )
        .order_by(Detection.received_at, Detection.id)
        .limit(BATCH)
    ).all()
    if not rows:
        return 0
    rule.detections_seen_at, rule.detections_seen_id = rows[-1].received_at, rows[-1].id
    if not enabled:
        return 0  # the watermark moves on all the same: turning the kind on later does not bring old news
    groups: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        groups.setdefault((row.agent_id, row.name), []).append(row)
    for (agent_id, name), found in groups.items():
        first = found[0]
        session.add(
            AlertRecord(
                rule_id=rule.id,
                unit_id=first.unit_id,
                kind=AlertKind.NEW_DETECTION,
                dedupe_key=f"detection:{agent_id}:{name}"[:255],
                subject=f"{name} — {first.hostname}"[:255],
                details={
                    "agent_id": agent_id,
                    "hostname": first.hostname,
                    "name": name,
                    "sha256": first.sha256,
                    "detection_id": first.id,
                },
                first_seen=min(aware(r.occurred_at) for r in found),
                last_seen=max(aware(r.occurred_at) for r in found),
                count=len(found),
                raised_at=moment,
            )
        )
    return len(groups)


# -- outbreaks --------------------------------------------------------------------------------------------------


def _outbreaks(session: Session, rule: AlertRule, unit: Unit, moment: datetime) -> int:
    since = moment - timedelta(minutes=rule.outbreak_minutes)
    window = and_(
        Unit.path.startswith(unit.path),
        Detection.occurred_at >= since,
        Detection.occurred_at <= moment,
        Detection.received_at <= moment,
        Detection.triage != Triage.FALSE_POSITIVE,
    )
    computers = func.count(func.distinct(Detection.agent_id))
    measures = (computers, func.count(), func.min(Detection.occurred_at))
    by_name = session.execute(
        select(Detection.name, *measures)
        .join(Unit, Unit.id == Detection.unit_id)
        .where(window)
        .group_by(Detection.name)
        .having(computers >= rule.outbreak_computers)
    ).all()
    by_hash = session.execute(
        select(Detection.sha256, func.min(Detection.name), *measures)
        .join(Unit, Unit.id == Detection.unit_id)
        .where(window, Detection.sha256.is_not(None))
        .group_by(Detection.sha256)
        .having(computers >= rule.outbreak_computers)
    ).all()
    found: dict[str, Found] = {}
    for name, hosts, detections, first in by_name:
        condition = and_(window, Detection.name == name)
        details = {"by": "name", "name": name, "computers": hosts, "detections": detections}
        details["hosts"] = _hosts(session, condition)
        found[f"outbreak:name:{name}"[:255]] = Found(unit.id, name, details, aware(first), hosts)
    names = {row[0] for row in by_name}
    for sha256, name, hosts, detections, first in by_hash:
        if name in names:
            continue  # the same outbreak, already reported by its name
        condition = and_(window, Detection.sha256 == sha256)
        details = {"by": "sha256", "sha256": sha256, "name": name, "computers": hosts, "detections": detections}
        details["hosts"] = _hosts(session, condition)
        found[f"outbreak:sha256:{sha256}"] = Found(unit.id, f"SHA-256 {sha256}", details, aware(first), hosts)
    return _track(session, rule, AlertKind.OUTBREAK, found, moment)


def _hosts(session: Session, condition: ColumnElement[bool]) -> list[str]:
    query = (
        select(Agent.hostname)
        .join(Detection, Detection.agent_id == Agent.id)
        .join(Unit, Unit.id == Detection.unit_id)
        .where(condition)
        .distinct()
        .order_by(Agent.hostname)
        .limit(HOSTS_SHOWN)
    )
    return list(session.scalars(query))


# -- conditions on computers ----------------------------------------------------------------------------------


def _agent_conditions(rule: AlertRule, moment: datetime) -> list[tuple[AlertKind, ColumnElement[bool], str]]:
    known_or_old = or_(
        Agent.signature_date.is_not(None), Agent.enrolled_at < moment - timedelta(days=rule.outdated_days)
    )
    return [
        (AlertKind.OFFLINE, Agent.last_seen_at < moment - timedelta(hours=rule.offline_hours), "last_seen"),
        # A computer that never said how old its signatures are counts once it has been enrolled that long (a
        # computer enrolled a minute ago has not sent its first heartbeat yet).
        (AlertKind.OUTDATED, and_(updates.outdated(rule.outdated_days, moment), known_or_old), "signatures"),
        (AlertKind.UPDATE_FAILING, Agent.update_error != "", "update_error"),
    ]


def _agents(session: Session, unit: Unit, condition: ColumnElement[bool], describe: str) -> dict[str, Found]:
    rows = session.execute(
        select(Agent.id, Agent.hostname, Agent.unit_id, Agent.last_seen_at, Agent.signature_date)
        .add_columns(Agent.update_error, Agent.update_error_at)
        .join(Unit, Unit.id == Agent.unit_id)
        .where(Unit.path.startswith(unit.path), Agent.revoked.is_(False), condition)
    ).all()
    found = {}
    for row in rows:
        details: dict[str, Any] = {"agent_id": row.id, "hostname": row.hostname}
        since: datetime | None
        if describe == "last_seen":
            details["last_seen"] = aware(row.last_seen_at).isoformat()
            since = aware(row.last_seen_at)
        elif describe == "signatures":
            details["signature_date"] = aware(row.signature_date).isoformat() if row.signature_date else None
            since = aware(row.signature_date) if row.signature_date else None
        else:
            details["error"] = row.update_error[:300]
            since = aware(row.update_error_at) if row.update_error_at else None
        found[f"{describe}:{row.id}"] = Found(row.unit_id, row.hostname[:255], details, since or _EPOCH)
    return found


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _track(
    session: Session, rule: AlertRule, kind: AlertKind, found: dict[str, Found], moment: datetime, prefix: str = ""
) -> int:
    """Conditions that hold now against the rule's active records of ``kind``: new ones are raised, lasting ones
    kept up to date (not raised again), ended ones cleared. Returns how many were raised."""
    query = select(AlertRecord).where(
        AlertRecord.rule_id == rule.id, AlertRecord.kind == kind, AlertRecord.active.is_(True)
    )
    if prefix:
        query = query.where(AlertRecord.dedupe_key.startswith(prefix))
    elif kind == AlertKind.UPDATE_FAILING:
        query = query.where(AlertRecord.dedupe_key.not_like("notice:%"))
    active = {record.dedupe_key: record for record in session.scalars(query)}
    for key, record in active.items():
        if key in found:
            now_found = found[key]
            record.details, record.count, record.last_seen = now_found.details, now_found.count, moment
        else:
            record.active, record.cleared_at, record.last_seen = False, moment, moment
    raised = 0
    for key, now_found in found.items():
        if key in active:
            continue
        session.add(
            AlertRecord(
                rule_id=rule.id,
                unit_id=now_found.unit_id,
                kind=kind,
                dedupe_key=key,
                subject=now_found.subject,
                details=now_found.details,
                first_seen=now_found.first_seen,
                last_seen=moment,
                count=now_found.count,
                active=True,
                raised_at=moment,
            )
        )
        raised += 1
    return raised


# -- reporting deadlines ------------------------------------------------------------------------------------------


def _deadlines(
    session: Session, rule: AlertRule, unit: Unit, due: Sequence[calendar.Reminder], moment: datetime
) -> int:
    if not due:
        return 0
    inside = set(
        session.scalars(select(Unit.id).where(Unit.id.in_({r.unit_id for r in due}), Unit.path.startswith(unit.path)))
    )
    keys = {
        reminder: f"deadline:{reminder.unit_id}:{reminder.year}Q{reminder.quarter}:{reminder.days_left}"
        for reminder in due
        if reminder.unit_id in inside
    }
    if not keys:
        return 0
    sent = set(
        session.scalars(
            select(AlertRecord.dedupe_key).where(
                AlertRecord.rule_id == rule.id, AlertRecord.dedupe_key.in_(set(keys.values()))
            )
        )
    )
    raised = 0
    for reminder, key in keys.items():
        if key in sent:
            continue
        details = {
            "unit": reminder.unit_name,
            "year": reminder.year,
            "quarter": reminder.quarter,
            "deadline": reminder.deadline.isoformat(),
            "days_left": reminder.days_left,
        }
        session.add(
            AlertRecord(
                rule_id=rule.id,
                unit_id=reminder.unit_id,
                kind=AlertKind.DEADLINE,
                dedupe_key=key,
                subject=reminder.unit_name[:255],
                details=details,
                first_seen=moment,
                last_seen=moment,
                count=1,
                raised_at=moment,
            )
        )
        raised += 1
    return raised
