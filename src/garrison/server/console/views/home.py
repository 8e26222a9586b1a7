"""The console's home page: an overview of the viewer's part of the organisation.

For now it shows what the server knows, the units and the endpoints each declares; the protection figures
(installed, online, signatures up to date, detections) arrive with the agents API and are shown as clearly
marked placeholders until then, never as invented numbers.
"""

from __future__ import annotations

from fastapi import Request, Response

from garrison.server.console.views.units import tree_rows
from garrison.server.console.web import ConsoleDb, CurrentViewer, console_router, render
from garrison.server.units import service

router = console_router()


@router.get("/")
def home(request: Request, session: ConsoleDb, viewer: CurrentViewer) -> Response:
    rows = tree_rows(service.subtree(session, viewer.caller.scope))
    declared = {
        "servers": sum(r.unit.declared_servers for r in rows),
        "workstations": sum(r.unit.declared_workstations for r in rows),
        "other": sum(r.unit.declared_other for r in rows),
    }
    declared["all"] = sum(declared.values())
    # The overview lists the top of the viewer's tree and the level below it; the full tree is one click away.
    overview = [r for r in rows if r.depth <= 1]
    context = {"rows": overview, "unit_count": len(rows), "declared": declared}
    return render(request, "home.html", context, viewer=viewer)
