"""The console's home page: an overview of the viewer's part of the organisation.

Every figure is computed from the database for the viewer's subtree and links to the filtered list behind it:
units and declared endpoints, protected computers (online with real-time protection on) against the declared
endpoints, computers online now, computers whose signatures are older than 7 and 15 days, and the detections of
the last 30 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request, Response
from sqlalchemy.orm import Session

from garrison.server.agents import service as agents
from garrison.server.auth.scope import Scope
from garrison.server.console.views.agents import Filters, shown_agents, signature_older_than
from garrison.server.console.views.units import tree_rows
from garrison.server.console.web import ConsoleDb, CurrentViewer, console_router, render
from garrison.server.db import utcnow
from garrison.server.deps import Settings
from garrison.server.detections import service as detections
from garrison.server.detections.models import Triage
from garrison.server.units import service

router = console_router()

RECENT_DAYS = 30


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


def protection(session: Session, scope: Scope, interval: float) -> Protection:
    now = utcnow()
    rows = [r for r in shown_agents(session, scope, interval, Filters()) if r.state != agents.AgentState.REVOKED]
    online = [r for r in rows if r.state == agents.AgentState.ONLINE]
    since = now - timedelta(days=RECENT_DAYS)
    return Protection(
        enrolled=len(rows),
        online=len(online),
        protected=sum(1 for r in online if r.agent.realtime_enabled),
        signatures_7=sum(1 for r in rows if signature_older_than(r.agent, 7, now)),
        signatures_15=sum(1 for r in rows if signature_older_than(r.agent, 15, now)),
        detections_recent=detections.count(session, scope, since=since),
        detections_to_review=detections.count(session, scope, since=since, triage=Triage.NEW),
    )


@router.get("/")
def home(request: Request, session: ConsoleDb, viewer: CurrentViewer, settings: Settings) -> Response:
    rows = tree_rows(service.subtree(session, viewer.caller.scope))
    declared = {
        "servers": sum(r.unit.declared_servers for r in rows),
        "workstations": sum(r.unit.declared_workstations for r in rows),
        "other": sum(r.unit.declared_other for r in rows),
    }
    declared["all"] = sum(declared.values())
    # The overview lists the top of the viewer's tree and the level below it; the full tree is one click away.
    overview = [r for r in rows if r.depth <= 1]
    context = {
        "rows": overview,
        "unit_count": len(rows),
        "declared": declared,
        "protection": protection(session, viewer.caller.scope, settings.heartbeat_seconds),
        "recent_days": RECENT_DAYS,
    }
    return render(request, "home.html", context, viewer=viewer)
