"""The reporting calendar: each quarter's deadline per unit, and the reminders due before it.

Regulations §8: the quarterly malware-infection report goes up the tree *before the 20th of the quarter's last
month* (20/03, 20/06, 20/09, 20/12). A unit whose children report to it (the province, a department, a district)
may set its own *reporting line* for them (:class:`~garrison.server.reports.models.ReportingLine`): the day of the
last month before which they submit (due before that day, so the deadline is that day at 00:00 Vietnam time) and
the days before the deadline on which they are reminded. A unit without a line of its own passes its nearest
ancestor's down; above them all is the regulation's (:data:`REGULATION`). The top unit reports outside the tree
(to the national authority), under the regulation's rule.

Days are Vietnam's (``statistics.ZONE``, no daylight saving time). A reminder is due on the day whose date is
``days_left`` days before the deadline's date: with the deadline on the 20th at 00:00, a 1-day reminder comes on
the 19th, the last day to submit.

:func:`due_reminders` is what the alerts feature calls (once a day or more often; it must remember what it sent):
it only says who should be reminded today, and sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, Forbidden, NotFound
from garrison.server.reports.models import ReportingLine, ReportSubmission
from garrison.server.reports.statistics import ZONE, current_quarter, day_start
from garrison.server.units import service as units
from garrison.server.units.models import Unit

#: The deadline day must leave room after submissions open (the 1st of the last month) and exist in every
#: quarter's last month (March, June, September, December have at least 30 days).
MIN_DAY, MAX_DAY = 2, 30
#: Reminders start at most this many days before the deadline (with the earliest deadline, the 2nd of the last
#: month, 60 days before it is still in the same quarter), and a line has at most this many.
MAX_REMINDER_DAYS, MAX_REMINDERS = 60, 6


@dataclass(frozen=True, slots=True)
class Rule:
    """A deadline rule: due before ``deadline_day`` of the quarter's last month; reminders ``reminder_days``
    before it (largest first). ``unit_id``: the unit whose line it is (None: the regulation's)."""

    deadline_day: int
    reminder_days: tuple[int, ...]
    unit_id: int | None = None


REGULATION = Rule(20, (14, 7, 3, 1))


@dataclass(frozen=True, slots=True)
class Reminder:
    """A unit that has not submitted the quarter's report, on one of its reminder days (the alerts feature's input).

    ``deadline`` is in UTC (the deadline day at 00:00 Vietnam time); ``days_left`` is the number of Vietnam days
    from today to the deadline's date (1: today is the last day to submit)."""

    unit_id: int
    unit_name: str
    year: int
    quarter: int
    deadline: datetime
    days_left: int


def check_rule(deadline_day: int, reminder_days: Iterable[int]) -> tuple[int, tuple[int, ...]]:
    """The rule's values, reminder days without duplicates and largest first; :class:`BadRequest` naming what is
    wrong."""
    if not MIN_DAY <= deadline_day <= MAX_DAY:
        raise BadRequest(f"the deadline day must be from {MIN_DAY} to {MAX_DAY}, not {deadline_day}")
    days = tuple(sorted(set(reminder_days), reverse=True))
    if len(days) > MAX_REMINDERS:
        raise BadRequest(f"at most {MAX_REMINDERS} reminder days")
    if any(not 1 <= d <= MAX_REMINDER_DAYS for d in days):
        raise BadRequest(f"reminder days are from 1 to {MAX_REMINDER_DAYS} days before the deadline")
    return deadline_day, days


# -- rules ------------------------------------------------------------------------------------------------------


def _ids(path: str) -> list[int]:
    return [int(part) for part in path.strip("/").split("/") if part]


def _lines(session: Session) -> dict[int, Rule]:
    return {
        line.unit_id: Rule(line.deadline_day, tuple(line.reminder_days), line.unit_id)
        for line in session.scalars(select(ReportingLine))
    }


def _nearest(ids: Sequence[int], lines: dict[int, Rule]) -> Rule:
    for unit_id in reversed(ids):
        if unit_id in lines:
            return lines[unit_id]
    return REGULATION


def line_of(unit_path: str, lines: dict[int, Rule]) -> Rule:
    """The rule ``unit`` sets for the units under it: its own line, else its nearest ancestor's, else the
    regulation's."""
    return _nearest(_ids(unit_path), lines)


def rule_for(unit_path: str, lines: dict[int, Rule]) -> Rule:
    """The rule a unit reports under: its parent's line (inherited as :func:`line_of` says); the top unit, which
    reports outside the tree, the regulation's."""
    ids = _ids(unit_path)
    return _nearest(ids[:-1], lines) if len(ids) > 1 else REGULATION


def deadline_at(rule: Rule, year: int, quarter: int) -> datetime:
    """The deadline (UTC) of ``quarter`` of ``year`` under ``rule``."""
    return day_start(date(year, 3 * quarter, rule.deadline_day))


def opens_at(year: int, quarter: int) -> datetime:
    """When a quarter's reports may be submitted (UTC): the first day of its last month, since the deadline comes
    before the quarter ends (regulations §8)."""
    return day_start(date(year, 3 * quarter, 1))


def rules(session: Session) -> dict[int, Rule]:
    """Every unit's own line, by unit id (to pass to :func:`rule_for` and :func:`line_of` for many units)."""
    return _lines(session)


def deadline(session: Session, unit_id: int, year: int, quarter: int) -> datetime:
    """When ``unit_id``'s report of ``quarter`` of ``year`` is due (UTC; the deadline day at 00:00 Vietnam time)."""
    if not 1 <= quarter <= 4:
        raise BadRequest(f"a quarter is 1 to 4, not {quarter}")
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"no unit {unit_id}")
    return deadline_at(rule_for(unit.path, _lines(session)), year, quarter)


def days_left(deadline_utc: datetime, now: datetime) -> int:
    """Vietnam days from ``now``'s date to the deadline's (0 or less: the deadline has passed)."""
    return (deadline_utc.astimezone(ZONE).date() - now.astimezone(ZONE).date()).days


def _next(year: int, quarter: int) -> tuple[int, int]:
    return (year + 1, 1) if quarter == 4 else (year, quarter + 1)


def due_reminders(session: Session, now: datetime | None = None) -> list[Reminder]:
    """The units to remind today (Vietnam's date of ``now``, default the present): those that have not submitted
    a quarter's report (on this server or through federation) and for which today is one of their rule's reminder
    days before that quarter's deadline. Most urgent first, then in tree order. Read-only; sends nothing."""
    now = now or utcnow()
    quarters = [current_quarter(now)]
    quarters.append(_next(*quarters[0]))  # a deadline is always in its own quarter; the next one for safety
    lines = _lines(session)
    submitted = {
        (unit_id, year, quarter)
        for unit_id, year, quarter in session.execute(
            select(ReportSubmission.unit_id, ReportSubmission.year, ReportSubmission.quarter)
            .where(or_(*(and_(ReportSubmission.year == y, ReportSubmission.quarter == q) for y, q in quarters)))
            .distinct()
        )
    }
    found = []
    for unit in sorted(session.scalars(select(Unit)), key=units.tree_order):
        rule = rule_for(unit.path, lines)
        for year, quarter in quarters:
            if (unit.id, year, quarter) in submitted:
                continue
            due = deadline_at(rule, year, quarter)
            left = days_left(due, now)
            if left in rule.reminder_days:
                found.append(Reminder(unit.id, unit.name, year, quarter, due, left))
    return sorted(found, key=lambda r: r.days_left)  # stable: tree order within a day


@dataclass(frozen=True, slots=True)
class DueSoon:
    """A unit's report of the current quarter, not sent yet, from its first reminder day to the deadline's day, and
    how many of the units directly under it have not sent theirs (the console's overview says so to its readers,
    whether or not anyone set up an alert rule)."""

    unit: Unit
    year: int
    quarter: int
    deadline: datetime  # UTC
    days_left: int  # 1: today is the last day; 0 or less: overdue
    units_missing: int
    units_total: int


def due_soon(session: Session, unit: Unit, now: datetime | None = None) -> DueSoon | None:
    """``unit``'s report of the current quarter when it is not sent and today is at or after its rule's first
    reminder day (until the quarter ends); None otherwise. Read-only."""
    now = now or utcnow()
    year, quarter = current_quarter(now)
    lines = _lines(session)
    rule = rule_for(unit.path, lines)
    due = deadline_at(rule, year, quarter)
    left = days_left(due, now)
    if left > max(rule.reminder_days, default=0):
        return None
    children = list(session.scalars(select(Unit.id).where(Unit.parent_id == unit.id)))
    sent = {
        unit_id
        for unit_id in session.scalars(
            select(ReportSubmission.unit_id).where(
                ReportSubmission.unit_id.in_([unit.id, *children]),
                ReportSubmission.year == year,
                ReportSubmission.quarter == quarter,
            )
        )
    }
    if unit.id in sent:
        return None
    return DueSoon(unit, year, quarter, due, left, len([c for c in children if c not in sent]), len(children))


# -- editing the lines ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineView:
    """A unit's rule for the units under it, and where it comes from (``own``, or inherited from a unit, or the
    regulation's when ``rule.unit_id`` is None)."""

    unit: Unit
    rule: Rule

    @property
    def own(self) -> bool:
        return self.rule.unit_id == self.unit.id


def list_lines(session: Session, scope: Scope, root_id: int | None = None) -> list[LineView]:
    """The rule of every unit of the subtree (default: the scope), parents before children."""
    lines = _lines(session)
    return [LineView(unit, line_of(unit.path, lines)) for unit in units.subtree(session, scope, root_id)]


def set_line(
    session: Session, scope: Scope, actor: Actor, unit_id: int, deadline_day: int, reminder_days: Iterable[int]
) -> ReportingLine:
    """Give ``unit_id`` its own line for the units under it (an administrator of that unit or above)."""
    if not scope.writable:
        raise Forbidden("read-only access")
    unit = units.get(session, scope, unit_id)
    day, days = check_rule(deadline_day, reminder_days)
    line = session.scalar(select(ReportingLine).where(ReportingLine.unit_id == unit.id))
    before = None if line is None else {"deadline_day": line.deadline_day, "reminder_days": line.reminder_days}
    if line is None:
        line = ReportingLine(unit_id=unit.id)
        session.add(line)
    line.deadline_day, line.reminder_days = day, list(days)
    line.updated_at, line.updated_by_name = utcnow(), actor.name
    session.flush()
    record(
        session, actor, "reporting_line.set", "unit", unit.id, unit_id=unit.id, before=before,
        deadline_day=day, reminder_days=list(days),
    )  # fmt: skip
    return line


def clear_line(session: Session, scope: Scope, actor: Actor, unit_id: int) -> None:
    """Remove ``unit_id``'s own line: the units under it report under the inherited rule again."""
    if not scope.writable:
        raise Forbidden("read-only access")
    unit = units.get(session, scope, unit_id)
    line = session.scalar(select(ReportingLine).where(ReportingLine.unit_id == unit.id))
    if line is None:
        return
    record(
        session, actor, "reporting_line.clear", "unit", unit.id, unit_id=unit.id,
        before={"deadline_day": line.deadline_day, "reminder_days": line.reminder_days},
    )  # fmt: skip
    session.delete(line)
    session.flush()
