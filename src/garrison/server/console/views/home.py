"""The console's home page: an overview of the viewer's part of the organisation.

Every figure is computed from the database for the viewer's subtree and links to the filtered list behind it:
units and declared endpoints, protected computers (online with real-time protection on) against the declared
endpoints, computers online now, computers whose signatures are older than 7 and 15 days, the detections of
the last 30 days, the computers that need someone; coverage by unit (protected / declared, target 100 %),
detections per day over 30 days (Vietnam's calendar days, counted by the database) as an inline SVG chart, and
the most frequent threats; above them, the report of the quarter still to send (from the first reminder day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from fastapi import Request, Response
from sqlalchemy.orm import Session

from garrison.server.agents import service as agents
from garrison.server.auth.scope import Scope
from garrison.server.console import charts, i18n
from garrison.server.console.views.agents import NEED_LABELS, Filters, Shown, shown_agents
from garrison.server.console.views.reporting import last_day
from garrison.server.console.views.units import Row, tree_rows
from garrison.server.console.views.updates import warnings
from garrison.server.console.web import ConsoleDb, CurrentViewer, console_router, gettext, render
from garrison.server.db import utcnow
from garrison.server.deps import Settings
from garrison.server.detections import service as detections
from garrison.server.detections.models import Triage
from garrison.server.reports import calendar
from garrison.server.units import service
from garrison.server.updates import service as updates
from garrison.server.updates.api import get_repository

router = console_router()

RECENT_DAYS = 30
TOP_THREATS = 10
NEEDS_SHOWN = 10


@dataclass(frozen=True, slots=True)
class Protection:
    """The protection figures of a part of the organisation."""

    enrolled: int  # computers enrolled and not revoked
    online: int
    protected: int  # online with real-time protection on
    signatures_7: int  # signatures older than 7 days (or never reported), among enrolled computers
    signatures_15: int
    detections_recent: int  # found in the last RECENT_DAYS days
    detections_to_review: int  # of those, not reviewed yet
    needs_action: int  # computers that need someone (see ``views.agents.needs_of``)


@dataclass(frozen=True, slots=True)
class Coverage:
    """One unit of the overview with the computers of its subtree."""

    row: Row
    enrolled: int  # not revoked
    protected: int  # online with real-time protection on
    declared: int  # endpoints declared by the unit and the units below it
    percent: int | None  # protected / declared, rounded down; None when nothing is declared

    @property
    def below_target(self) -> bool:
        return self.percent is not None and self.protected < self.declared


def _is_protected(row: Shown) -> bool:
    return row.state == agents.AgentState.ONLINE and row.agent.realtime_enabled


def protection(session: Session, scope: Scope, rows: list[Shown]) -> Protection:
    """The figures of ``rows`` (the viewer's computers, revoked ones included) and of the recent detections."""
    now = utcnow()
    active = [r for r in rows if r.state != agents.AgentState.REVOKED]
    since = now - timedelta(days=RECENT_DAYS)
    # Counted as the updates page and the national report count them (and as ``/agents?signatures=N`` lists them).
    outdated = updates.outdated_counts(session, scope, now)
    return Protection(
        enrolled=len(active),
        online=sum(1 for r in active if r.state == agents.AgentState.ONLINE),
        protected=sum(1 for r in active if _is_protected(r)),
        signatures_7=outdated[7],
        signatures_15=outdated[15],
        detections_recent=detections.count(session, scope, since=since),
        detections_to_review=detections.count(session, scope, since=since, triage=Triage.NEW),
        needs_action=sum(1 for r in active if r.needs),
    )


def coverage(units: list[Row], tree: list[Row], rows: list[Shown]) -> list[Coverage]:
    """Enrolled and protected computers against declared endpoints, for each of ``units`` with its subtree.

    ``tree`` is the viewer's whole tree (the computers of units not shown count in their parents).
    """
    paths = {r.unit.id: r.unit.path for r in tree}
    active = [(paths.get(r.agent.unit_id, ""), _is_protected(r)) for r in rows if r.state != agents.AgentState.REVOKED]
    result = []
    for unit in units:
        inside = [protected for path, protected in active if path.startswith(unit.unit.path)]
        protected = sum(inside)
        percent = protected * 100 // unit.subtree_total if unit.subtree_total else None
        result.append(Coverage(unit, len(inside), protected, unit.subtree_total, percent))
    return result


def detections_per_day(session: Session, scope: Scope, today: date) -> charts.Chart:
    """The last RECENT_DAYS days up to ``today`` (Vietnam's days), each with its detections and its bar."""
    first = today - timedelta(days=RECENT_DAYS - 1)
    counts = detections.count_by_day(
        session,
        scope,
        since=i18n.day_start(first),
        until=i18n.day_start(today + timedelta(days=1)),
        zone=i18n.DISPLAY_ZONE,
    )
    found = charts.buckets(counts, first, today, "day")
    return charts.bar_chart(found, "day", lambda a, b: f"/detections?{urlencode({'from': a, 'to': b})}")


def _today() -> date:
    return datetime.now(i18n.DISPLAY_ZONE).date()


@router.get("/")
def home(request: Request, session: ConsoleDb, viewer: CurrentViewer, settings: Settings) -> Response:
    scope = viewer.caller.scope
    rows = tree_rows(service.subtree(session, scope))
    declared = {
        "servers": sum(r.unit.declared_servers for r in rows),
        "workstations": sum(r.unit.declared_workstations for r in rows),
        "other": sum(r.unit.declared_other for r in rows),
    }
    declared["all"] = sum(declared.values())
    computers = shown_agents(session, scope, settings.heartbeat_seconds, Filters())
    # The overview lists the top of the viewer's tree and the level below it; the full tree is one click away.
    overview = [r for r in rows if r.depth <= 1]
    chart = detections_per_day(session, scope, _today())
    needing = sorted((r for r in computers if r.needs), key=lambda r: (-len(r.needs), r.agent.hostname.lower()))
    context = {
        "rows": overview,
        "unit_count": len(rows),
        "declared": declared,
        "protection": protection(session, scope, computers),
        "recent_days": RECENT_DAYS,
        "coverage": coverage(overview, rows, computers),
        "chart": chart,
        "threats": detections.top_names(
            session, scope, since=utcnow() - timedelta(days=RECENT_DAYS), limit=TOP_THREATS
        ),
        "needing": needing[:NEEDS_SHOWN],
        "need_labels": NEED_LABELS,
        "update_warnings": warnings(session, get_repository(request), gettext(request)),
        # The reports of the top of the viewer's tree still to send this quarter (from the first reminder day).
        "due_reports": [due for r in rows if r.depth == 0 if (due := calendar.due_soon(session, r.unit))],
        "last_day_of": last_day,
    }
    return render(request, "home.html", context, viewer=viewer)
