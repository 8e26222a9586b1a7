"""Infection and protection statistics of a unit subtree over a period, computed by the database.

``compute`` answers the figures the national report asks for (regulations.md §7–§8): endpoints declared, enrolled,
online, protected, firewall on, signatures out of date; detections by name and type, infected endpoints, removed,
quarantined and outstanding infections, time from detection to removal; and the same period figures for the
previous period of the same length. Every figure is one aggregate query (filtered counts, GROUP BY, COUNT
DISTINCT); nothing loops over agents or detections in Python. Read-only: it never writes, and it does not format
anything (the API, the exports and the console do).

Definitions (the API documentation repeats them):

- *enrolled*: agents enrolled before the period's end and not revoked then (revoked later still counts).
- *online*, *protected*, *firewall on*, *signatures older than N days*: the state **now**, whatever the period
  (nothing keeps their history): online as ``agents.service.state_of`` says it (heard from within three of its
  heartbeat intervals plus a minute), protected = online with real-time protection on, firewall on = the last
  heartbeat of a computer not revoked said so, out of date = ``updates.service.outdated``.
- *removed*: the agent quarantined or deleted the file when it found it, successfully (``action`` quarantine or
  delete, ``action_ok``); *quarantined* and *deleted* split it.
- *resolved*: not removed by the agent, but marked resolved by a person (dealt with by hand).
- *outstanding*: not removed by the agent (report only, or the action failed) and still to review (triage
  ``new``): neither resolved nor a false alarm.
- *infected endpoints*: distinct computers with a detection in the period that is not a false alarm.
- *time to removal*: over the removed and resolved detections of the period, 0 for a removal by the agent (it acts
  when it detects) and ``triaged_at - occurred_at`` for a resolution by a person. Delete tasks act on files already
  in quarantine, so they do not end an infection and do not count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Float,
    Interval,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session

from garrison.server.agents.models import Agent
from garrison.server.agents.service import OFFLINE_AFTER_INTERVALS
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.detections import service as outcomes
from garrison.server.detections.models import Detection, Triage
from garrison.server.errors import BadRequest
from garrison.server.reports.models import EndpointState
from garrison.server.units import service as units
from garrison.server.units.models import Unit
from garrison.server.updates.service import outdated

#: The calendar of quarters and of the console's days: Vietnam's (no time zone setting exists on the server; this
#: is the console's ``i18n.DISPLAY_ZONE``). Vietnam has no daylight saving time.
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
TOP_NAMES = 10
OUTDATED_DAYS = (7, 15)
#: Longest period asked for at once (a few years); longer is a mistake, not a report.
MAX_PERIOD = timedelta(days=3 * 366)
#: PostgreSQL's memory for each sort or hash of the statistics' queries (see ``compute``).
WORK_MEM = "64MB"


# -- quarters ---------------------------------------------------------------------------------------------------


def quarter_bounds(year: int, quarter: int, zone: tzinfo = ZONE) -> tuple[datetime, datetime]:
    """The first moment of quarter ``quarter`` (1–4) of ``year`` and of the next quarter, in ``zone``, as UTC."""
    if not 1 <= quarter <= 4:
        raise ValueError(f"a quarter is 1 to 4, not {quarter}")
    first = date(year, 3 * quarter - 2, 1)
    after = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return day_start(first, zone), day_start(after, zone)


def current_quarter(now: datetime | None = None, zone: tzinfo = ZONE) -> tuple[int, int]:
    """The (year, quarter) that ``now`` (default: the present) falls in, in ``zone``."""
    local = (now or utcnow()).astimezone(zone)
    return local.year, (local.month - 1) // 3 + 1


def day_start(day: date, zone: tzinfo = ZONE) -> datetime:
    """The first moment of ``day`` in ``zone``, in UTC (SQLite compares the stored UTC times as text)."""
    return datetime.combine(day, time(), zone).astimezone(UTC)


# -- the figures ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Declared endpoints of the subtree's units, and the state of its computers now."""

    declared_servers: int
    declared_workstations: int
    declared_other: int
    active: int  # not revoked now
    online: int
    protected: int  # online with real-time protection on
    realtime_on: int  # not revoked, real-time protection on (online or not)
    firewall_on: int
    firewall_unknown: int  # never said (older agents, systems without a firewall Garrison can read)
    signatures_7: int  # signatures older than 7 days, or never reported
    signatures_15: int

    @property
    def declared(self) -> int:
        return self.declared_servers + self.declared_workstations + self.declared_other


#: The fields of :class:`Endpoints` in order (``EndpointState`` has a column of each name).
ENDPOINT_FIELDS = tuple(Endpoints.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class PeriodCounts:
    """The figures of one period (the requested one, or the one before it)."""

    enrolled: int  # at the period's end
    detections: int
    names: int  # distinct malware names
    infected_endpoints: int
    removed: int
    quarantined: int
    deleted: int
    action_failed: int  # the agent tried to quarantine or delete, and could not
    resolved: int
    outstanding: int
    false_positives: int

    FIELDS = (
        "enrolled",
        "detections",
        "names",
        "infected_endpoints",
        "removed",
        "quarantined",
        "deleted",
        "action_failed",
        "resolved",
        "outstanding",
        "false_positives",
    )

    def minus(self, other: PeriodCounts) -> PeriodCounts:
        return PeriodCounts(*(getattr(self, f) - getattr(other, f) for f in self.FIELDS))


EMPTY = PeriodCounts(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class NameCount:
    """A malware name (or a detection type) with its detections and the distinct computers they were on."""

    name: str
    detections: int
    computers: int


@dataclass(frozen=True, slots=True)
class RemovalTime:
    """Time from detection to removal, in seconds, over ``count`` removed or resolved detections."""

    count: int
    median_seconds: float | None
    mean_seconds: float | None


@dataclass(frozen=True, slots=True)
class Statistics:
    unit_id: int | None  # None: the caller's whole scope
    unit_path: str  # the subtree's materialised path ("/" for the whole tree)
    start: datetime
    end: datetime
    previous_start: datetime  # the previous period is [previous_start, start)
    computed_at: datetime
    endpoints: Endpoints
    current: PeriodCounts
    previous: PeriodCounts
    by_name: list[NameCount]  # the top names, most detections first
    by_kind: list[NameCount]  # every detection type, most detections first
    time_to_removal: RemovalTime
    # The previous period's figures of the same names (those of ``by_name`` found then; absent ones had none),
    # every type, and its time to removal: what the trends are drawn from.
    previous_by_name: list[NameCount] = field(default_factory=list)
    previous_by_kind: list[NameCount] = field(default_factory=list)
    previous_time_to_removal: RemovalTime = RemovalTime(0, None, None)
    # The day (Vietnam's) ``endpoints`` were recorded on, for a period that ended before today; None: they are the
    # state at ``computed_at``. ``previous_endpoints``: as recorded by the previous period's end, if they were.
    endpoints_day: date | None = None
    previous_endpoints: Endpoints | None = None
    previous_endpoints_day: date | None = None

    @property
    def trend(self) -> PeriodCounts:
        """This period's figures minus the previous period's."""
        return self.current.minus(self.previous)

    def to_json(self) -> dict[str, Any]:
        """Every figure as JSON-ready values (times in ISO 8601 UTC): what a frozen snapshot stores, and what
        :meth:`from_json` reads back into equal statistics."""
        figures = asdict(self)
        for key in ("start", "end", "previous_start", "computed_at", "endpoints_day", "previous_endpoints_day"):
            moment = getattr(self, key)
            figures[key] = moment.isoformat() if moment is not None else None
        return figures

    @classmethod
    def from_json(cls, figures: dict[str, Any]) -> Statistics:
        """The statistics :meth:`to_json` wrote; a key missing or of the wrong type is a ``KeyError`` or
        ``TypeError`` (snapshots are written by this code, never by users)."""
        return cls(
            unit_id=figures["unit_id"],
            unit_path=figures["unit_path"],
            start=datetime.fromisoformat(figures["start"]),
            end=datetime.fromisoformat(figures["end"]),
            previous_start=datetime.fromisoformat(figures["previous_start"]),
            computed_at=datetime.fromisoformat(figures["computed_at"]),
            endpoints=Endpoints(**figures["endpoints"]),
            current=PeriodCounts(**figures["current"]),
            previous=PeriodCounts(**figures["previous"]),
            by_name=[NameCount(**n) for n in figures["by_name"]],
            by_kind=[NameCount(**n) for n in figures["by_kind"]],
            time_to_removal=RemovalTime(**figures["time_to_removal"]),
            previous_by_name=[NameCount(**n) for n in figures.get("previous_by_name", [])],
            previous_by_kind=[NameCount(**n) for n in figures.get("previous_by_kind", [])],
            endpoints_day=_day(figures.get("endpoints_day")),
            previous_endpoints=Endpoints(**figures["previous_endpoints"])
            if figures.get("previous_endpoints")
            else None,
            previous_endpoints_day=_day(figures.get("previous_endpoints_day")),
            previous_time_to_removal=RemovalTime(
                **figures.get("previous_time_to_removal", {"count": 0, "median_seconds": None, "mean_seconds": None})
            ),
        )


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def compute(
    session: Session,
    scope: Scope,
    unit_id: int | None,
    start: datetime,
    end: datetime,
    *,
    heartbeat_seconds: float = 60.0,
    now: datetime | None = None,
    top: int = TOP_NAMES,
) -> Statistics:
    """The figures of ``unit_id``'s subtree (None: the caller's whole scope) for the period [start, end).

    A unit outside ``scope`` is :class:`NotFound`. ``heartbeat_seconds`` is the server's default interval, for
    agents that were never given one (as ``agents.service.state_of`` takes it). Naive times are taken as UTC.
    """
    start, end = _utc(start), _utc(end)
    if not start < end:
        raise BadRequest("the period must end after it starts")
    if end - start > MAX_PERIOD:
        raise BadRequest("the period is longer than three years")
    now = _utc(now or utcnow())
    path = units.get(session, scope, unit_id).path if unit_id is not None else scope.path
    if session.get_bind().dialect.name == "postgresql":
        # A province's year has ~300,000 (name, computer) groups: PostgreSQL's default 4 MB of memory per sort or
        # hash makes it spill them to disk (2.2 s instead of 1 s). This transaction only.
        session.execute(text(f"SET LOCAL work_mem = '{WORK_MEM}'"))
    previous_start = start - (end - start)
    current, previous = _period_counts(session, path, previous_start, start, end)
    by_name = _top(session, path, start, end, Detection.name, top)
    endpoints, endpoints_day = _endpoints(session, path, now, heartbeat_seconds), None
    today = now.astimezone(ZONE).date()
    first, last = (start.astimezone(ZONE).date(), (end - timedelta(microseconds=1)).astimezone(ZONE).date())
    if last < today and (recorded := _recorded_endpoints(session, path, first, last)) is not None:
        endpoints_day, endpoints = recorded
    previous_first = previous_start.astimezone(ZONE).date()
    before = _recorded_endpoints(session, path, previous_first, first - timedelta(days=1))
    return Statistics(
        unit_id=unit_id,
        unit_path=path,
        start=start,
        end=end,
        previous_start=previous_start,
        computed_at=now,
        endpoints=endpoints,
        endpoints_day=endpoints_day,
        previous_endpoints=before[1] if before else None,
        previous_endpoints_day=before[0] if before else None,
        current=_with_enrolled(current, _enrolled(session, path, end)),
        previous=_with_enrolled(previous, _enrolled(session, path, start)),
        by_name=by_name,
        by_kind=_top(session, path, start, end, Detection.kind, None),
        time_to_removal=_removal_time(session, path, start, end),
        previous_by_name=_top(
            session, path, previous_start, start, Detection.name, None, among=[n.name for n in by_name]
        ),
        previous_by_kind=_top(session, path, previous_start, start, Detection.kind, None),
        previous_time_to_removal=_removal_time(session, path, previous_start, start),
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _under(column: Any, path: str) -> ColumnElement[bool]:
    """``column`` (a unit id) is a unit of the subtree at ``path``."""
    if path == "/":
        return true()
    return column.in_(select(Unit.id).where(Unit.path.startswith(path)))  # type: ignore[no-any-return]


# -- endpoints --------------------------------------------------------------------------------------------------


def online_condition(session: Session, now: datetime, heartbeat_seconds: float) -> ColumnElement[bool]:
    """The SQL form of ``agents.service.state_of(...) is ONLINE``: not revoked, and heard from within
    ``OFFLINE_AFTER_INTERVALS`` of its own heartbeat interval (else ``heartbeat_seconds``) plus a minute."""
    interval = func.coalesce(Agent.heartbeat_seconds, cast(literal(heartbeat_seconds), Float))
    window: ColumnElement[float] = interval * OFFLINE_AFTER_INTERVALS + 60
    if session.get_bind().dialect.name == "postgresql":
        second = literal_column("interval '1 second'", type_=Interval)
        recent = Agent.last_seen_at >= literal(now, DateTime(timezone=True)) - window * second
    else:
        # SQLite keeps the UTC times as text; julianday() reads them (days, with fractions).
        moment = now.replace(tzinfo=None).isoformat(sep=" ")
        recent = func.julianday(Agent.last_seen_at) >= func.julianday(moment) - window / 86400.0
    return and_(Agent.revoked.is_(False), Agent.last_seen_at.is_not(None), recent)


def declared_columns() -> list[ColumnElement[Any]]:
    """Sums of the units' declared servers, workstations and other endpoints (over the rows selected)."""
    return [
        func.coalesce(func.sum(Unit.declared_servers), 0),
        func.coalesce(func.sum(Unit.declared_workstations), 0),
        func.coalesce(func.sum(Unit.declared_other), 0),
    ]


def state_columns(session: Session, now: datetime, heartbeat_seconds: float) -> list[ColumnElement[Any]]:
    """Counts of agents, in the order of :class:`Endpoints` after the declared figures: active, online, protected,
    real-time on, firewall on and unknown, signatures older than 7 and 15 days, as they are at ``now``."""
    active = Agent.revoked.is_(False)
    online = online_condition(session, now, heartbeat_seconds)
    return [
        func.count().filter(active),
        func.count().filter(online),
        func.count().filter(and_(online, Agent.realtime_enabled.is_(True))),
        func.count().filter(and_(active, Agent.realtime_enabled.is_(True))),
        func.count().filter(and_(active, Agent.firewall_enabled.is_(True))),
        func.count().filter(and_(active, Agent.firewall_enabled.is_(None))),
        *(func.count().filter(and_(active, outdated(days, now))) for days in OUTDATED_DAYS),
    ]


def _endpoints(session: Session, path: str, now: datetime, heartbeat_seconds: float) -> Endpoints:
    declared = session.execute(
        select(*declared_columns()).where(Unit.path.startswith(path) if path != "/" else true())
    ).one()
    row = session.execute(
        select(*state_columns(session, now, heartbeat_seconds)).where(_under(Agent.unit_id, path))
    ).one()
    return Endpoints(*(int(n) for n in declared), *(int(n) for n in row))


def _recorded_endpoints(session: Session, path: str, first: date, last: date) -> tuple[date, Endpoints] | None:
    """The subtree's endpoints on the latest day in [first, last] the server recorded them (``reports.history``),
    or None when it recorded none in those days."""
    in_subtree = _under(EndpointState.unit_id, path)
    day = session.scalar(
        select(func.max(EndpointState.day)).where(in_subtree, EndpointState.day >= first, EndpointState.day <= last)
    )
    if day is None:
        return None
    columns = [func.coalesce(func.sum(getattr(EndpointState, name)), 0) for name in ENDPOINT_FIELDS]
    row = session.execute(select(*columns).where(in_subtree, EndpointState.day == day)).one()
    return day, Endpoints(*(int(n) for n in row))


def _enrolled(session: Session, path: str, moment: datetime) -> int:
    """Agents enrolled before ``moment`` and not revoked by then."""
    not_revoked = or_(Agent.revoked.is_(False), and_(Agent.revoked_at.is_not(None), Agent.revoked_at >= moment))
    query = select(func.count()).select_from(Agent).where(_under(Agent.unit_id, path))
    return session.scalar(query.where(Agent.enrolled_at < moment, not_revoked)) or 0


def _with_enrolled(counts: PeriodCounts, enrolled: int) -> PeriodCounts:
    return PeriodCounts(enrolled, *(getattr(counts, f) for f in PeriodCounts.FIELDS[1:]))


# -- detections -------------------------------------------------------------------------------------------------


def _in_period(path: str, start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(_under(Detection.unit_id, path), Detection.occurred_at >= start, Detection.occurred_at < end)


def _period_counts(
    session: Session, path: str, previous_start: datetime, start: datetime, end: datetime
) -> tuple[PeriodCounts, PeriodCounts]:
    """Detection figures of [start, end) and of [previous_start, start), in one pass (``enrolled`` left 0), and
    the two distinct counts in one more each.

    ``COUNT(DISTINCT …)`` next to the other counts makes PostgreSQL sort the whole year per group (2.4 s of the
    province's year); grouping the distinct pairs first lets it hash them (``_distinct_per_period``)."""
    period = _period_column(start)
    query = (
        select(
            period,
            func.count(),
            *(func.count().filter(outcomes.OUTCOMES[key]()) for key in ("removed", "quarantined", "deleted", "failed")),
            func.count().filter(outcomes.resolved()),
            func.count().filter(outcomes.outstanding()),
            func.count().filter(Detection.triage == Triage.FALSE_POSITIVE),
        )
        .where(_in_period(path, previous_start, end))
        .group_by(period)
    )
    names = _distinct_per_period(session, path, previous_start, start, end, Detection.name, true())
    real = Detection.triage != Triage.FALSE_POSITIVE
    infected = _distinct_per_period(session, path, previous_start, start, end, Detection.agent_id, real)
    found = {
        row[0]: PeriodCounts(0, int(row[1]), names.get(row[0], 0), infected.get(row[0], 0), *(int(n) for n in row[2:]))
        for row in session.execute(query)
    }
    return found.get(1, EMPTY), found.get(0, EMPTY)


def _period_column(start: datetime) -> Any:
    """1 for a detection of the period, 0 for one of the previous period."""
    return case((Detection.occurred_at >= start, 1), else_=0).label("period")


def _distinct_per_period(
    session: Session,
    path: str,
    previous_start: datetime,
    start: datetime,
    end: datetime,
    column: Any,
    condition: ColumnElement[bool],
) -> dict[int, int]:
    """Distinct values of ``column`` among the detections meeting ``condition``, per period (1: this, 0: before)."""
    period = _period_column(start)
    pairs = (
        select(period, column)
        .where(_in_period(path, previous_start, end), condition)
        .group_by(period, column)
        .subquery()
    )
    counted = select(pairs.c.period, func.count()).group_by(pairs.c.period)
    return {int(which): int(n) for which, n in session.execute(counted)}


def _top(
    session: Session,
    path: str,
    start: datetime,
    end: datetime,
    column: Any,
    limit: int | None,
    *,
    among: list[str] | None = None,
) -> list[NameCount]:
    """The values of ``column`` with most detections in the period (``among``: only these values), with their
    distinct computers (counted from (value, computer) groups, which the database hashes; see _period_counts)."""
    per_computer = (
        select(column.label("value"), Detection.agent_id, func.count().label("n"))
        .where(_in_period(path, start, end), true() if among is None else column.in_(among))
        .group_by(column, Detection.agent_id)
        .subquery()
    )
    found = func.sum(per_computer.c.n)
    query: Select[Any] = (
        select(per_computer.c.value, found, func.count())
        .group_by(per_computer.c.value)
        .order_by(found.desc(), per_computer.c.value)
    )
    if limit is not None:
        query = query.limit(limit)
    return [NameCount(name, int(n), int(computers)) for name, n, computers in session.execute(query)]


def _resolution_seconds(session: Session) -> ColumnElement[Any]:
    """Seconds from detection to a person's resolution, never negative (clocks differ)."""
    if session.get_bind().dialect.name == "postgresql":
        seconds: ColumnElement[Any] = func.extract("epoch", Detection.triaged_at - Detection.occurred_at)
    else:
        seconds = (func.julianday(Detection.triaged_at) - func.julianday(Detection.occurred_at)) * 86400.0
    return case((seconds < 0, 0.0), else_=seconds)


def _removal_time(session: Session, path: str, start: datetime, end: datetime) -> RemovalTime:
    """Median and mean of 0 for each removal by the agent and of the resolution time of each resolved detection.

    The zeros are counted, not listed; the median is then at most two resolution times, read by the database
    at their rank (ORDER BY … OFFSET), so nothing is fetched row by row.
    """
    seconds = _resolution_seconds(session)
    period = _in_period(path, start, end)
    resolved = and_(period, outcomes.resolved(), Detection.triaged_at.is_not(None))
    zeros, timed, total = session.execute(
        select(
            func.count().filter(outcomes.removed()),
            func.count().filter(and_(outcomes.resolved(), Detection.triaged_at.is_not(None))),
            func.coalesce(func.sum(case((and_(outcomes.resolved(), Detection.triaged_at.is_not(None)), seconds))), 0.0),
        ).where(period)
    ).one()
    count = int(zeros) + int(timed)
    if count == 0:
        return RemovalTime(0, None, None)
    middle = []
    for rank in sorted({(count + 1) // 2, (count + 2) // 2}):  # 1-based; one rank when count is odd
        if rank <= zeros:
            middle.append(0.0)
        else:
            value = session.scalar(select(seconds).where(resolved).order_by(seconds).offset(rank - zeros - 1).limit(1))
            middle.append(float(value or 0.0))
    median = sum(middle) / len(middle)
    return RemovalTime(count, round(median, 3), round(float(total) / count, 3))
