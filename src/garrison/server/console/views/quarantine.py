"""Console pages of the files computers keep in quarantine: the list across the viewer's subtree (filtered by
state and computer) and its CSV export, and the buttons that restore a file, delete it for good or collect it as
a sample — each a task for the one computer that holds the file, made through ``tasks.service`` (which checks
the scope and writes the audit log).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request, Response
from sqlalchemy import ColumnElement, case, select
from sqlalchemy.orm import Session

from garrison.protocol.tasks import QuarantineState, TaskKind
from garrison.server.agents.models import Agent
from garrison.server.auth.scope import Scope
from garrison.server.console import csvfile, i18n, sorting
from garrison.server.console.views.tasks import (
    MAX_EXPORT,
    PAGE_SIZE,
    go,
    labels,
    quarantine_state_text,
    unit_names,
)
from garrison.server.console.web import (
    ConsoleDb,
    CurrentViewer,
    WritingViewer,
    console_router,
    gettext,
    render,
)
from garrison.server.errors import BadRequest, Forbidden, NotFound, ServerError
from garrison.server.tasks import quarantine, service
from garrison.server.tasks.models import QuarantinedFile
from garrison.server.units import service as units

router = console_router()

#: ``state=all``: every file, whatever became of it.
ALL = "all"
#: The buttons of a quarantined file and the task each one makes.
ACTIONS = {"restore": TaskKind.RESTORE, "delete": TaskKind.DELETE, "collect": TaskKind.COLLECT}
#: The sortable columns (``sort``): newest first by default; the computer, the threat, the size, the state.
SORTABLE = sorting.Sortable(
    ("quarantined", "computer", "name", "size", "state"),
    "quarantined",
    default_descending=True,
    descending_first=frozenset({"quarantined", "size"}),
)
Chosen = Annotated[sorting.Sort, Depends(SORTABLE.chosen)]
_SORT_COLUMNS: dict[str, list[sorting.Orderable]] = {
    "quarantined": [QuarantinedFile.quarantined_at],
    "computer": [Agent.hostname],
    "name": [QuarantinedFile.name],
    "size": [QuarantinedFile.size],
    # In the order of a file's life: in quarantine, restored, deleted.
    "state": [
        case({s: i for i, s in enumerate(QuarantineState)}, value=QuarantinedFile.state, else_=len(QuarantineState))
    ],
}


def order_of(sort: sorting.Sort) -> list[ColumnElement[Any]]:
    return sorting.order_by(sort, _SORT_COLUMNS, [QuarantinedFile.agent_id, QuarantinedFile.item_id])


@dataclass(frozen=True, slots=True)
class Filters:
    state: str = QuarantineState.QUARANTINED.value
    agent: str = ""

    def query_string(self) -> str:
        parts = {"state": self.state if self.state != QuarantineState.QUARANTINED.value else "", "agent": self.agent}
        return urlencode({k: v for k, v in parts.items() if v})

    def search(self) -> dict[str, Any]:
        return {
            "state": QuarantineState(self.state) if self.state != ALL else None,
            "agent_id": self.agent or None,
        }


def _filters(state: str, agent: str) -> Filters:
    known = {s.value for s in QuarantineState} | {ALL}
    return Filters(state if state in known else QuarantineState.QUARANTINED.value, agent.strip()[:36])


def of_detection(session: Session, scope: Scope, detection_id: str) -> QuarantinedFile | None:
    """The quarantined file a detection put in quarantine, if the server knows of one."""
    query = units.within(select(QuarantinedFile), scope, QuarantinedFile.unit_id)
    found: QuarantinedFile | None = session.scalars(query.where(QuarantinedFile.detection_id == detection_id)).first()
    return found


@router.get("/quarantine")
def list_page(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    chosen: Chosen,
    state: str = "",
    agent: str = "",
    page: int = 1,
) -> Response:
    filters = _filters(state, agent)
    order = chosen
    scope = viewer.caller.scope
    page = max(1, page)

    def read(page: int) -> tuple[list[tuple[QuarantinedFile, Agent]], int]:
        offset = (page - 1) * PAGE_SIZE
        return quarantine.search(
            session, scope, **filters.search(), limit=PAGE_SIZE, offset=offset, order=order_of(order)
        )

    shown, total = read(page)
    pages = max(1, -(-total // PAGE_SIZE))
    if page > pages:
        page = pages
        shown, total = read(page)
    host = ""
    if filters.agent:
        host = next((a.hostname for _item, a in shown), "") or filters.agent
    context = {
        "files": shown,
        "unit_names": unit_names(session, (item.unit_id for item, _agent in shown)),
        "filters": filters,
        "sort": order,
        "states": [s.value for s in QuarantineState],
        "all": ALL,
        "host": host,
        "total": total,
        "page": page,
        "pages": pages,
        **labels(request),
    }
    return render(request, "quarantine/list.html", context, viewer=viewer)


@router.get("/quarantine.csv")
def export(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    chosen: Chosen,
    state: str = "",
    agent: str = "",
) -> Response:
    _ = gettext(request)
    filters = _filters(state, agent)
    order = order_of(chosen)
    found, _total = quarantine.search(session, viewer.caller.scope, **filters.search(), limit=MAX_EXPORT, order=order)
    names = unit_names(session, (item.unit_id for item, _agent in found))
    header = [_("Computer"), _("Unit"), _("File"), _("Threat"), "SHA-256", _("Size (bytes)"), _("Quarantined")]
    header += [_("State"), _("Since"), _("Computer ID"), _("Quarantine ID")]
    rows = [
        [
            a.hostname,
            names.get(item.unit_id, ""),
            item.path,
            item.name,
            item.sha256 or "",
            item.size,
            i18n.moment(item.quarantined_at),
            quarantine_state_text(item.state.value, _),
            i18n.moment(item.state_at) if item.state_at else "",
            a.id,
            item.item_id,
        ]
        for item, a in found
    ]
    return csvfile.download("quarantine", header, rows)


@router.post("/quarantine/{agent_id}/{item_id}/{action}")
def act(
    request: Request, agent_id: str, item_id: str, action: str, session: ConsoleDb, viewer: WritingViewer
) -> Response:
    """Restore, delete or collect one quarantined file: a task for the computer that holds it."""
    if not viewer.can_write:
        raise Forbidden("read-only access")
    if action not in ACTIONS:
        raise NotFound("no such page")
    scope = viewer.caller.scope
    try:
        quarantine.get(session, scope, agent_id, item_id)
    except NotFound:
        raise NotFound("no such page") from None
    try:
        task = service.create_task(
            session,
            scope,
            viewer.caller.actor,
            ACTIONS[action],
            {"quarantine_id": item_id},
            service.Target(agent_ids=(agent_id,)),
        )
    except ServerError as refused:
        raise BadRequest(i18n.explain_error(refused, gettext(request))) from None
    return go(request, f"/tasks/{task.id}?done=created")
