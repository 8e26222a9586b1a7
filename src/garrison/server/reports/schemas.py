"""The statistics as the REST API answers them: every figure with the console list that shows its evidence.

An evidence link is given only when a console list with existing filters shows exactly the counted rows;
otherwise it is ``null`` (no filter exists yet for that figure, or not for a unit below the caller's scope).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from urllib.parse import urlencode

from pydantic import BaseModel

from garrison.server.reports.statistics import ZONE, PeriodCounts, Statistics, day_start


class Figure(BaseModel):
    value: int
    evidence: str | None = None


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
    endpoints: dict[str, Figure]
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
    # The detections list has no unit filter: it shows the caller's whole scope, which is the counted subtree
    # only when that subtree is the scope (or the root of the whole tree, which holds every unit).
    whole_scope = stats.unit_path == scope_path or (scope_path == "/" and stats.unit_path.count("/") == 2)
    days = _whole_days(stats) if whole_scope else None

    def detections(**filters: object) -> str | None:
        if days is None:
            return None
        return _link("/detections", from_=days[0], to=days[1], **filters)

    e = stats.endpoints
    endpoints = {
        "declared": Figure(value=e.declared, evidence="/units"),
        "declared_servers": Figure(value=e.declared_servers, evidence="/units"),
        "declared_workstations": Figure(value=e.declared_workstations, evidence="/units"),
        "declared_other": Figure(value=e.declared_other, evidence="/units"),
        "active": Figure(value=e.active, evidence=_link("/agents", state="active", unit=unit)),
        "online": Figure(value=e.online, evidence=_link("/agents", state="online", unit=unit)),
        "protected": Figure(value=e.protected, evidence=_link("/agents", protected=1, unit=unit)),
        "realtime_on": Figure(value=e.realtime_on),
        "firewall_on": Figure(value=e.firewall_on),
        "firewall_unknown": Figure(value=e.firewall_unknown),
        "signatures_7": Figure(value=e.signatures_7, evidence=_link("/agents", signatures=7, unit=unit)),
        "signatures_15": Figure(value=e.signatures_15, evidence=_link("/agents", signatures=15, unit=unit)),
    }
    evidence: dict[str, str | None] = {
        # The list of active computers is the enrolled ones when the period has not ended yet.
        "enrolled": _link("/agents", state="active", unit=unit) if stats.end > stats.computed_at else None,
        "detections": detections(),
        "names": detections(),
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
        endpoints=endpoints,
        detections=period,
        by_name=[NameOut(**asdict(n), evidence=detections(name=n.name)) for n in stats.by_name],
        by_kind=[NameOut(**asdict(n)) for n in stats.by_kind],
        time_to_removal=RemovalTimeOut(count=t.count, median_seconds=t.median_seconds, mean_seconds=t.mean_seconds),
    )
