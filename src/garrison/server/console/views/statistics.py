"""The statistics page: the figures of the national report for a unit and a period, in plain words.

``/statistics`` lets the reader choose a unit of their subtree (default: all of it) and a quarter (default: the
current one) or two days (``from`` and ``to``, both included). The figures come from
``reports.statistics.compute`` and their evidence links from ``reports.schemas.statistics_out`` (the console list
that shows exactly the counted rows, when one exists); the previous period's malware names and time to removal
come from a second ``compute`` over the previous period. The page offers the same figures as CSV and XLSX files
through the REST API (``/api/v1/statistics.csv`` / ``.xlsx``) with the same unit, period and the page's language.

A unit outside the reader's scope is a 404 page (``units.get`` refuses it); a wrong date or period is explained on
the page, with the form, and no figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Query, Request, Response
from sqlalchemy.orm import Session

from garrison.server.auth.scope import Scope
from garrison.server.console import charts, i18n
from garrison.server.console.i18n import N_
from garrison.server.console.views.units import tree_rows
from garrison.server.console.web import ConsoleDb, CurrentViewer, console_router, gettext, language, render
from garrison.server.deps import Settings
from garrison.server.detections import service as detections
from garrison.server.errors import NotFound
from garrison.server.reports import statistics
from garrison.server.reports.schemas import StatisticsOut, statistics_out
from garrison.server.units import service as units
from garrison.server.wire import ID_MAX

router = console_router()

#: Years offered in the year select: this one and the ones before it.
YEARS_SHOWN = 6
#: Malware names listed (and drawn in the chart).
TOP_NAMES = statistics.TOP_NAMES

# The figures of the computers: their state now or on the last day recorded in the period, except ``enrolled``.
ENDPOINT_LABELS = {
    "declared": (
        N_("Endpoints declared by the units"),
        N_("%(servers)s servers, %(workstations)s workstations, %(other)s other"),
    ),
    "online": (N_("Computers online"), N_("connected to the server in the last few minutes")),
    "protected": (N_("Protected computers"), N_("online, with real-time protection on")),
    "firewall_on": (N_("Firewall on"), N_("computers whose firewall is on (%(unknown)s did not say)")),
    "signatures_7": (N_("Signatures older than 7 days"), N_("computers to update, or that never reported")),
    "signatures_15": (N_("Signatures older than 15 days"), N_("computers at risk, or that never reported")),
}
# The figures of the period, compared with the previous period.
PERIOD_LABELS = {
    "enrolled": (N_("Computers with Garrison"), N_("enrolled and not revoked at the end of the period")),
    "detections": (N_("Detections"), N_("times Garrison found malware")),
    "infected_endpoints": (N_("Infected computers"), N_("computers where malware was found (false alarms left out)")),
    "removed": (N_("Removed by Garrison"), N_("quarantined or deleted when found")),
    "quarantined": (N_("Put in quarantine"), N_("files moved into quarantine when found")),
    "outstanding": (N_("Still to deal with"), N_("not removed, and nobody has reviewed them yet")),
}
# The other figures of the period, in the table of details.
DETAIL_LABELS = {
    "names": N_("Different malware names"),
    "deleted": N_("Deleted by Garrison"),
    "action_failed": N_("Garrison could not remove the file"),
    "resolved": N_("Dealt with by a person"),
    "false_positives": N_("False alarms"),
}
# The detection's type: which kind of signature matched (``engine.results.DetectionKind``).
KIND_LABELS = {
    "hash": N_("Known file (fingerprint)"),
    "body": N_("Known content inside a file"),
    "logical": N_("Combination of known patterns"),
    "yara": N_("Rule written by security staff"),
    "builtin": N_("Built-in check"),
    "heuristic": N_("Suspicious file (heuristic)"),
}


@dataclass(frozen=True, slots=True)
class Choice:
    """What the reader asked for: a unit (None: their whole scope) and a quarter or two days (both included)."""

    unit: int | None
    year: int
    quarter: int
    first: date | None = None  # custom days, when both are given
    last: date | None = None

    @property
    def custom(self) -> bool:
        return self.first is not None and self.last is not None

    def days(self) -> tuple[date, date]:
        """The first day of the period and the day after its last (Vietnam's days)."""
        if self.first is not None and self.last is not None:
            return self.first, self.last + timedelta(days=1)
        first = date(self.year, 3 * self.quarter - 2, 1)
        after = date(self.year + 1, 1, 1) if self.quarter == 4 else date(self.year, 3 * self.quarter + 1, 1)
        return first, after

    def page_query(self) -> dict[str, str]:
        query = {"unit": str(self.unit) if self.unit is not None else ""}
        if self.first is not None and self.last is not None:
            query.update({"from": self.first.isoformat(), "to": self.last.isoformat()})
        else:
            query.update({"year": str(self.year), "quarter": str(self.quarter)})
        return {k: v for k, v in query.items() if v}

    def export_query(self, lang: str) -> str:
        first, after = self.days()
        query = {"start": first.isoformat(), "end": after.isoformat(), "lang": lang}
        if self.unit is not None:
            query = {"unit_id": str(self.unit), **query}
        return urlencode(query)


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure as the page shows it; ``previous`` is None when nothing was recorded to compare with."""

    code: str
    label: str
    sub: str
    value: int
    previous: int | None = None
    evidence: str | None = None
    warn: bool = False
    sub_args: dict[str, str] = field(default_factory=dict)

    @property
    def difference(self) -> int:
        return self.value - (self.previous or 0)


@dataclass(frozen=True, slots=True)
class NameRow:
    name: str
    label: str  # the name itself, or the type in words
    detections: int
    computers: int
    previous: int
    evidence: str | None
    percent: int  # the bar's length, of the largest count

    @property
    def difference(self) -> int:
        return self.detections - self.previous


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None


def parse(unit: str, year: str, quarter: str, first_day: str, last_day: str) -> tuple[Choice, str | None]:
    """The reader's choice and, when something was wrong, what (an English msgid; the defaults are used)."""
    now_year, now_quarter = statistics.current_quarter()
    chosen_unit: int | None = None
    if unit.strip():
        if not unit.strip().isdigit() or not 1 <= int(unit) <= ID_MAX:
            raise NotFound("no such unit")
        chosen_unit = int(unit)
    chosen_year = int(year) if year.isdigit() and 2000 <= int(year) <= now_year + 1 else now_year
    chosen_quarter = int(quarter) if quarter.isdigit() and 1 <= int(quarter) <= 4 else now_quarter
    plain = Choice(chosen_unit, chosen_year, chosen_quarter)
    if not first_day.strip() and not last_day.strip():
        return plain, None
    first, last = _date(first_day), _date(last_day)
    if first is None or last is None:
        return plain, N_("Give both days of the period as dates (for example 2026-01-31), or choose a quarter.")
    if last < first:
        return plain, N_("The last day of the period is before its first day.")
    if last - first >= statistics.MAX_PERIOD:
        return plain, N_("The period may be at most three years long.")
    return Choice(chosen_unit, chosen_year, chosen_quarter, first, last), None


def duration(seconds: float | None, _: i18n.Gettext) -> str:
    """A time to removal in plain words."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return _("at once")
    if seconds < 120:
        return _("%(n)s seconds") % {"n": round(seconds)}
    if seconds < 2 * 3600:
        return _("%(n)s minutes") % {"n": round(seconds / 60)}
    if seconds < 2 * 86400:
        return _("%(n)s hours") % {"n": round(seconds / 3600)}
    return _("%(n)s days") % {"n": round(seconds / 86400)}


def _endpoint_figures(out: StatisticsOut, stats: statistics.Statistics, lang: str) -> list[Figure]:
    e = stats.endpoints
    figures = []
    for code, (label, sub) in ENDPOINT_LABELS.items():
        shown = out.endpoints[code]
        args: dict[str, str] = {}
        if code == "declared":
            args = {
                "servers": i18n.number(e.declared_servers, lang),
                "workstations": i18n.number(e.declared_workstations, lang),
                "other": i18n.number(e.declared_other, lang),
            }
        elif code == "firewall_on":
            args = {"unknown": i18n.number(e.firewall_unknown, lang)}
        warn = code.startswith("signatures") and shown.value > 0
        figures.append(Figure(code, label, sub, shown.value, shown.previous, shown.evidence, warn, args))
    return figures


def _period_figures(out: StatisticsOut) -> list[Figure]:
    figures = []
    for code, (label, sub) in PERIOD_LABELS.items():
        shown = out.detections[code]
        warn = code == "outstanding" and shown.value > 0
        figures.append(Figure(code, label, sub, shown.value, shown.previous, shown.evidence, warn))
    return figures


def _name_rows(
    rows: list[statistics.NameCount],
    previous: list[statistics.NameCount],
    evidence: dict[str, str | None],
    labels: dict[str, str] | None,
    _: i18n.Gettext,
) -> list[NameRow]:
    before = {p.name: p.detections for p in previous}
    top = max([1, *(r.detections for r in rows)])
    return [
        NameRow(
            name=r.name,
            label=_(labels[r.name]) if labels is not None and r.name in labels else r.name,
            detections=r.detections,
            computers=r.computers,
            previous=before.get(r.name, 0),
            evidence=evidence.get(r.name),
            percent=max(1, round(r.detections * 100 / top)) if r.detections else 0,
        )
        for r in rows
    ]


def timeline(session: Session, subtree: Scope, choice: Choice) -> charts.Chart:
    """The period's detections in ``subtree`` (the chosen unit's) by day, week or month (``charts.step_for``), each
    bar a link to its detections."""
    first, after = choice.days()
    counts = detections.count_by_day(
        session, subtree, since=statistics.day_start(first), until=statistics.day_start(after), zone=statistics.ZONE
    )
    last = after - timedelta(days=1)
    step = charts.step_for(first, last)
    unit = {"unit": choice.unit} if choice.unit is not None else {}

    def link(a: date, b: date) -> str:
        return f"/detections?{urlencode({'from': a, 'to': b, **unit})}"

    return charts.bar_chart(charts.buckets(counts, first, last, step), step, link)


def _dmy(day: date) -> str:
    return day.strftime("%d/%m/%Y")


@router.get("/statistics")
def statistics_page(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    settings: Settings,
    unit: str = "",
    year: str = "",
    quarter: str = "",
    first_day: Annotated[str, Query(alias="from")] = "",
    last_day: Annotated[str, Query(alias="to")] = "",
) -> Response:
    _ = gettext(request)
    lang = language(request)
    scope = viewer.caller.scope
    choice, problem = parse(unit, year, quarter, first_day, last_day)
    rows = tree_rows(units.subtree(session, scope))
    subtree = units.narrow(session, scope, choice.unit)  # 404 outside the reader's subtree
    now_year, _quarter = statistics.current_quarter()
    years = sorted({*range(now_year - YEARS_SHOWN + 1, now_year + 1), choice.year}, reverse=True)
    context: dict[str, object] = {
        "units": rows,
        "choice": choice,
        "years": years,
        "problem": _(problem) if problem else None,
        "stats": None,
    }
    if problem:
        return render(request, "statistics/page.html", context, viewer=viewer, status_code=400)

    first, after = choice.days()
    start, end = statistics.day_start(first), statistics.day_start(after)
    heartbeat = settings.heartbeat_seconds
    stats = statistics.compute(session, scope, choice.unit, start, end, heartbeat_seconds=heartbeat, top=TOP_NAMES)
    out = statistics_out(stats, scope.path)
    previous_first = stats.previous_start.astimezone(statistics.ZONE).date()
    chosen_unit = next((r.unit.name for r in rows if r.unit.id == choice.unit), None)
    t, pt = stats.time_to_removal, stats.previous_time_to_removal
    context.update(
        {
            "stats": stats,
            "unit_name": chosen_unit,
            "period": {"first": _dmy(first), "last": _dmy(after - timedelta(days=1))},
            "previous": {"first": _dmy(previous_first), "last": _dmy(first - timedelta(days=1))},
            "endpoint_figures": _endpoint_figures(out, stats, lang),
            "period_figures": _period_figures(out),
            "details": [
                Figure(
                    code,
                    label,
                    "",
                    out.detections[code].value,
                    out.detections[code].previous,
                    out.detections[code].evidence,
                )
                for code, label in DETAIL_LABELS.items()
            ],
            "removal": {
                "count": t.count,
                "previous_count": pt.count,
                "median": duration(t.median_seconds, _),
                "mean": duration(t.mean_seconds, _),
                "previous_median": duration(pt.median_seconds, _),
                "previous_mean": duration(pt.mean_seconds, _),
            },
            "by_name": _name_rows(
                stats.by_name, stats.previous_by_name, {n.name: n.evidence for n in out.by_name}, None, _
            ),
            "by_kind": _name_rows(stats.by_kind, stats.previous_by_kind, {}, KIND_LABELS, _),
            "timeline": timeline(session, subtree, choice),
            "csv": "/api/v1/statistics.csv?" + choice.export_query(lang),
            "xlsx": "/api/v1/statistics.xlsx?" + choice.export_query(lang),
        }
    )
    return render(request, "statistics/page.html", context, viewer=viewer)
