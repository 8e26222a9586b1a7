"""The roll-up of a quarter: which units under a parent have submitted, and the sum of what they submitted.

For a parent unit and a quarter, one row per unit directly under it: its deadline, its latest submission (here or
received from a federated child server: the same rows) and its status, with its figures — the frozen ones when it
submitted, else its **live** figures, marked as such. Two sums are given apart, never mixed: ``submitted`` (the
frozen figures of the units that submitted) and ``missing`` (the live figures of those that did not).

How figures add up (:func:`combine`):

- counts of computers, endpoints and detections add up (each computer and detection belongs to one unit);
- *names* (distinct malware names) do not: the sum is the number of distinct names in the union of the units'
  name lists, exact when every unit listed all of its names (Garrison's snapshots keep them all; a federated
  server may send only its top ones), otherwise at least the largest unit's count, and ``names_exact`` is False.
  The previous period's names have no list: the largest unit's count (exact only when at most one unit had any);
- the detections and computers of each name and of each detection type add up;
- time to removal: the count adds up and the mean is the count-weighted mean; medians do not add, so the median
  is given only when a single unit removed anything, else None (shown as "—").

Computers attached directly to the parent unit itself are in none of its children's reports; the parent's own
submission (``submissions.submit``) covers its whole subtree, live, and is the one to compare with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.reports import calendar, quarterly, statistics, submissions
from garrison.server.reports.models import ReportSubmission
from garrison.server.reports.statistics import Endpoints, NameCount, PeriodCounts, RemovalTime, Statistics
from garrison.server.units import service as units
from garrison.server.units.models import Unit


@dataclass(frozen=True, slots=True)
class Row:
    unit: Unit
    deadline: datetime
    submission: ReportSubmission | None  # the latest version
    status: submissions.Status
    figures: Statistics  # frozen when submitted, else live
    live: bool


@dataclass(frozen=True, slots=True)
class Rollup:
    parent: Unit
    year: int
    quarter: int
    rows: list[Row]
    submitted: Statistics | None  # the sum of the submitted (frozen) figures; None: nobody submitted
    missing: Statistics | None  # the sum of the live figures of those who did not; None: everyone submitted
    names_exact: bool  # submitted.current.names is exact (see the module's documentation)


def _names(parts: Sequence[NameCount]) -> list[NameCount]:
    merged: dict[str, tuple[int, int]] = {}
    for part in parts:
        detections, computers = merged.get(part.name, (0, 0))
        merged[part.name] = (detections + part.detections, computers + part.computers)
    rows = [NameCount(name, d, c) for name, (d, c) in merged.items()]
    return sorted(rows, key=lambda r: (-r.detections, r.name))


def _sum_counts(parts: Sequence[PeriodCounts], names: int) -> PeriodCounts:
    totals = {f: sum(getattr(p, f) for p in parts) for f in PeriodCounts.FIELDS}
    totals["names"] = names
    return PeriodCounts(**totals)


def combine(
    parts: Sequence[Statistics], unit: Unit, start: datetime, end: datetime, now: datetime
) -> tuple[Statistics, bool]:
    """The sum of ``parts`` as the statistics of ``unit``'s subtree for [start, end), and whether its distinct
    names are exact."""
    endpoints = Endpoints(**{f.name: sum(getattr(p.endpoints, f.name) for p in parts) for f in fields(Endpoints)})
    by_name = _names([n for p in parts for n in p.by_name])
    complete = all(p.current.names == len(p.by_name) for p in parts)
    names = len(by_name) if complete else max([len(by_name), *(p.current.names for p in parts)])
    with_previous = [p.previous.names for p in parts if p.previous.names]
    removals = [p.time_to_removal for p in parts if p.time_to_removal.count]
    count = sum(t.count for t in removals)
    mean = round(sum((t.mean_seconds or 0.0) * t.count for t in removals) / count, 3) if count else None
    median = removals[0].median_seconds if len(removals) == 1 else None
    total = Statistics(
        unit_id=unit.id,
        unit_path=unit.path,
        start=start,
        end=end,
        previous_start=start - (end - start),
        computed_at=now,
        endpoints=endpoints,
        current=_sum_counts([p.current for p in parts], names),
        previous=_sum_counts([p.previous for p in parts], max([0, *with_previous])),
        by_name=by_name,
        by_kind=_names([k for p in parts for k in p.by_kind]),
        time_to_removal=RemovalTime(count, median, mean),
    )
    return total, complete


def rollup(
    session: Session,
    scope: Scope,
    parent_id: int,
    year: int,
    quarter: int,
    *,
    heartbeat_seconds: float = 60.0,
    now: datetime | None = None,
) -> Rollup:
    """The roll-up of the units directly under ``parent_id`` (404 outside ``scope``) for the quarter."""
    now = now or utcnow()
    parent = units.get(session, scope, parent_id)
    children = sorted(session.scalars(select(Unit).where(Unit.parent_id == parent.id)), key=units.tree_order)
    rules = calendar.rules(session)
    found = submissions.latest(session, [c.id for c in children], year, quarter)
    start, end = statistics.quarter_bounds(year, quarter)
    rows = []
    for child in children:
        due = calendar.deadline_at(calendar.rule_for(child.path, rules), year, quarter)
        submission = found.get(child.id)
        if submission is not None:
            figures, live = submissions.frozen(submission), False
        else:
            figures = statistics.compute(
                session, scope, child.id, start, end, heartbeat_seconds=heartbeat_seconds, now=now
            )
            live = True
        rows.append(Row(child, due, submission, submissions.status(submission, due, now), figures, live))
    sent = [r.figures for r in rows if not r.live]
    unsent = [r.figures for r in rows if r.live]
    submitted, exact = combine(sent, parent, start, end, now) if sent else (None, True)
    missing = combine(unsent, parent, start, end, now)[0] if unsent else None
    return Rollup(parent, year, quarter, rows, submitted, missing, exact)


def unit_lines(found: Rollup) -> tuple[quarterly.UnitLine, ...]:
    """The roll-up as the quarterly document's section on the units' reports prints it."""
    lines = []
    for row in found.rows:
        sent = row.submission
        counts = row.figures.current
        lines.append(
            quarterly.UnitLine(
                name=row.unit.name,
                status=row.status,
                submitted=None if sent is None else submissions.submitted_at(sent).astimezone(statistics.ZONE).date(),
                version=None if sent is None else sent.version,
                live=row.live,
                enrolled=counts.enrolled,
                detections=counts.detections,
                infected=counts.infected_endpoints,
                resolved=counts.resolved,
                outstanding=counts.outstanding,
            )
        )
    return tuple(lines)


def document_lines(
    session: Session, scope: Scope, unit_id: int | None, year: int, quarter: int, *, heartbeat_seconds: float,
    now: datetime | None = None,
) -> tuple[quarterly.UnitLine, ...]:  # fmt: skip
    """The section on the units' reports of ``unit_id``'s quarterly document (404 outside ``scope``): empty
    without units under it."""
    if unit_id is None or session.scalar(select(Unit.id).where(Unit.parent_id == unit_id).limit(1)) is None:
        return ()
    found = rollup(session, scope, unit_id, year, quarter, heartbeat_seconds=heartbeat_seconds, now=now)
    return unit_lines(found)
