"""The statistics as the REST API answers them: every figure with the console list that shows its evidence.

An evidence link is given only when a console list with existing filters shows exactly the counted rows;
otherwise it is ``null`` (no filter exists yet for that figure, or not for a unit below the caller's scope).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from pydantic import BaseModel, Field

from garrison.server.reports.statistics import ENDPOINT_FIELDS, ZONE, PeriodCounts, Statistics, day_start


class Figure(BaseModel):
    value: int
    evidence: str | None = None


class EndpointFigure(Figure):
    """A computer figure; ``previous``: as recorded by the previous period's end (null when nothing was)."""

    previous: int | None = None


class PeriodFigure(BaseModel):
    """A figure of the period, with the previous period's and the difference (this minus previous)."""

    value: int
    previous: int
    difference: int
    evidence: str | None = None


class NameOut(BaseModel):
    name: str
    detections: int
    computers: int
    evidence: str | None = None


class RemovalTimeOut(BaseModel):
    count: int
    median_seconds: float | None
    mean_seconds: float | None


class PeriodOut(BaseModel):
    start: datetime
    end: datetime
    previous_start: datetime
    previous_end: datetime


class StatisticsOut(BaseModel):
    unit_id: int | None
    period: PeriodOut
    computed_at: datetime
    endpoints_day: date | None = Field(
        description="the day (Vietnam's) the computer figures were recorded, for a period that ended before "
        "today; null: they are the state at computed_at"
    )
    previous_endpoints_day: date | None
    endpoints: dict[str, EndpointFigure]
    detections: dict[str, PeriodFigure]
    by_name: list[NameOut]
    by_kind: list[NameOut]
    time_to_removal: RemovalTimeOut


def _link(page: str, **filters: object) -> str:
    parts = {k.rstrip("_"): str(v) for k, v in filters.items() if v not in (None, "")}
    return f"{page}?{urlencode(parts)}" if parts else page


def _whole_days(stats: Statistics) -> tuple[str, str] | None:
    """The console's ``from`` and ``to`` days (Vietnam's, ``to`` included) when the period is whole days."""
    first = stats.start.astimezone(ZONE).date()
    after = stats.end.astimezone(ZONE).date()
    if day_start(first) != stats.start or day_start(after) != stats.end:
        return None
    return first.isoformat(), (after - timedelta(days=1)).isoformat()


def statistics_out(stats: Statistics, scope_path: str) -> StatisticsOut:
    """``stats`` with their evidence links, for a caller whose scope is at ``scope_path``."""
    unit = stats.unit_id
    # The detections list shows the caller's scope; the unit filter narrows it to the counted subtree when that
    # is not the scope itself. Its days are whole days: a custom period cut mid-day has no list.
    whole_scope = stats.unit_path == scope_path or (scope_path == "/" and stats.unit_path.count("/") == 2)
    days = _whole_days(stats)
    narrowed = None if whole_scope else unit

    def detections(**filters: object) -> str | None:
        if days is None:
            return None
        return _link("/detections", from_=days[0], to=days[1], unit=narrowed, **filters)

    # The lists show computers as they are now: a figure recorded on a past day has no list to show.
    now = stats.endpoints_day is None
    lists: dict[str, str | None] = {
        "declared": "/units",
        "declared_servers": "/units",
        "declared_workstations": "/units",
        "declared_other": "/units",
        "active": _link("/agents", state="active", unit=unit) if now else None,
        "online": _link("/agents", state="online", unit=unit) if now else None,
        "protected": _link("/agents", protected=1, unit=unit) if now else None,
        "signatures_7": _link("/agents", signatures=7, unit=unit) if now else None,
        "signatures_15": _link("/agents", signatures=15, unit=unit) if now else None,
        "realtime_on": _link("/agents", realtime="on", unit=unit) if now else None,
        "firewall_on": _link("/agents", firewall="on", unit=unit) if now else None,
        "firewall_unknown": _link("/agents", firewall="unknown", unit=unit) if now else None,
    }
    before = stats.previous_endpoints
    endpoints = {
        name: EndpointFigure(
            value=getattr(stats.endpoints, name),
            previous=getattr(before, name) if before is not None else None,
            evidence=lists.get(name),
        )
        for name in ("declared", *ENDPOINT_FIELDS)
    }
    evidence: dict[str, str | None] = {
        # The list of active computers is the enrolled ones when the period has not ended yet.
        "enrolled": _link("/agents", state="active", unit=unit) if stats.end > stats.computed_at else None,
        "detections": detections(),
        "names": detections(),
        "infected_endpoints": (
            _link("/agents", infected_from=days[0], infected_to=days[1], unit=unit) if days is not None else None
        ),
        "removed": detections(outcome="removed"),
        "quarantined": detections(outcome="quarantined"),
        "deleted": detections(outcome="deleted"),
        "action_failed": detections(outcome="failed"),
        "resolved": detections(outcome="resolved"),
        "outstanding": detections(outcome="outstanding"),
        "false_positives": detections(triage="false_positive"),
    }
    trend = stats.trend
    period = {
        name: PeriodFigure(
            value=getattr(stats.current, name),
            previous=getattr(stats.previous, name),
            difference=getattr(trend, name),
            evidence=evidence.get(name),
        )
        for name in PeriodCounts.FIELDS
    }
    t = stats.time_to_removal
    return StatisticsOut(
        unit_id=unit,
        period=PeriodOut(
            start=stats.start, end=stats.end, previous_start=stats.previous_start, previous_end=stats.start
        ),
        computed_at=stats.computed_at,
        endpoints_day=stats.endpoints_day,
        previous_endpoints_day=stats.previous_endpoints_day,
        endpoints=endpoints,
        detections=period,
        by_name=[NameOut(**asdict(n), evidence=detections(name=n.name)) for n in stats.by_name],
        by_kind=[NameOut(**asdict(n)) for n in stats.by_kind],
        time_to_removal=RemovalTimeOut(count=t.count, median_seconds=t.median_seconds, mean_seconds=t.mean_seconds),
    )
