"""Console page of federation (``/federation``), for administrators of the whole tree.

On a parent: the child servers registered here (name, the unit they stand for, their last push and whether it is
fresh — stale after three of their push intervals, in red —, their computers and detections of the current
quarter), the totals across them, each child's figures page, and the forms that register a child (its one-time
join token and the command to run on the child are shown once), give it a new token, or revoke it. On a child:
which parent this server reports to, its last push and last error, and "Send now". Every change is audited by the
federation services it calls.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.server.audit.service import record
from garrison.server.console import i18n
from garrison.server.console.views.enrollment import server_fingerprint
from garrison.server.console.views.units import tree_rows
from garrison.server.console.web import (
    AdminViewer,
    AdminWriter,
    ConsoleDb,
    Viewer,
    console_router,
    gettext,
    redirect,
    render,
)
from garrison.server.db import Database
from garrison.server.deps import Settings
from garrison.server.errors import ServerError
from garrison.server.federation import child as link_files
from garrison.server.federation import parent
from garrison.server.federation.api import join_command, link_out
from garrison.server.federation.models import FederationReceivedReport
from garrison.server.federation.schemas import LinkOut
from garrison.server.reports import statistics
from garrison.server.reports.models import ReportSubmission
from garrison.server.settings import ServerSettings
from garrison.server.units import service as units
from garrison.server.wire import PathId

router = console_router()


def _link(settings: ServerSettings) -> tuple[LinkOut | None, str]:
    """This server's link to a parent (None: it has none), or the reason its files cannot be read."""
    try:
        return link_out(settings), ""
    except link_files.FederationError as exc:
        return None, str(exc)


def _page(
    request: Request,
    session: Session,
    viewer: Viewer,
    settings: ServerSettings,
    *,
    values: dict[str, str] | None = None,
    created: dict[str, str] | None = None,
    error: str = "",
    notice: str = "",
    status_code: int = 200,
) -> Response:
    year, quarter = statistics.current_quarter()
    listed = [
        parent.child_out(session, c, year, quarter, settings.federation_push_seconds) for c in parent.children(session)
    ]
    link, link_error = _link(settings)
    context = {
        "year": year,
        "quarter": quarter,
        "children": listed,
        "totals": parent.totals(listed, year, quarter),
        "units": tree_rows(units.subtree(session, viewer.caller.scope)),
        "values": values or {"name": "", "unit_id": "", "days": "7"},
        "created": created,
        "error": error,
        "notice": notice,
        "link": link,
        "link_error": link_error,
    }
    return render(request, "federation/index.html", context, viewer=viewer, status_code=status_code)


NOTICES = {
    "revoked": i18n.N_("The child server was revoked: what it sends from now on is refused."),
    "pushed": i18n.N_("This server sent its figures to its parent."),
    "push_failed": i18n.N_("Sending to the parent failed; the reason is shown below. Garrison tries again later."),
}


@router.get("/federation")
def index(request: Request, session: ConsoleDb, viewer: AdminViewer, settings: Settings, done: str = "") -> Response:
    _ = gettext(request)
    notice = _(NOTICES[done]) if done in NOTICES else ""
    return _page(request, session, viewer, settings, notice=notice)


def _created(request: Request, settings: ServerSettings, name: str, token: str) -> dict[str, str]:
    fingerprint = server_fingerprint(settings) if request.url.scheme == "https" else None
    return {
        "name": name,
        "token": token,
        "command": join_command(str(request.base_url).rstrip("/"), token, fingerprint),
        "fingerprint": fingerprint or "",
    }


@router.post("/federation")
def register(
    request: Request,
    session: ConsoleDb,
    viewer: AdminWriter,
    settings: Settings,
    name: Annotated[str, Form(max_length=200)] = "",
    unit_id: Annotated[str, Form(max_length=16)] = "",
    days: Annotated[str, Form(max_length=16)] = "7",
) -> Response:
    _ = gettext(request)
    values = {"name": name.strip(), "unit_id": unit_id, "days": days.strip()}
    error = ""
    if not values["name"] or len(values["name"]) > 128:
        error = _("Enter the child server's name (at most 128 characters), for example the district's name.")
    elif not unit_id.isdigit():
        error = _("Choose the unit of this tree that the child server reports for.")
    elif not values["days"].isdigit() or not 1 <= int(values["days"]) <= 30:
        error = _("The number of days must be a whole number from 1 to 30.")
    if error:
        return _page(request, session, viewer, settings, values=values, error=error, status_code=400)
    try:
        child, token = parent.register(
            session, viewer.caller.scope, viewer.caller.actor, values["name"], int(unit_id), int(values["days"])
        )
    except ServerError as refused:
        session.rollback()
        message = i18n.explain_error(refused, _)
        return _page(request, session, viewer, settings, values=values, error=message, status_code=refused.status)
    return _page(request, session, viewer, settings, created=_created(request, settings, child.name, token))


@router.post("/federation/{child_id}/token")
def new_token(
    request: Request, child_id: PathId, session: ConsoleDb, viewer: AdminWriter, settings: Settings
) -> Response:
    child, token = parent.new_join_token(session, viewer.caller.scope, viewer.caller.actor, child_id, 7)
    return _page(request, session, viewer, settings, created=_created(request, settings, child.name, token))


@router.post("/federation/{child_id}/revoke")
def revoke(child_id: PathId, session: ConsoleDb, viewer: AdminWriter) -> Response:
    parent.revoke(session, viewer.caller.scope, viewer.caller.actor, child_id)
    return redirect("/federation?done=revoked")


@router.post("/federation/push")
def push_now(request: Request, session: ConsoleDb, viewer: AdminWriter, settings: Settings) -> Response:
    record(session, viewer.caller.actor, "federation.push", "federation_link")
    session.commit()  # before the push opens sessions of its own (SQLite: this transaction holds the lock)
    database: Database = request.app.state.database
    try:
        link_files.push(database, settings)
    except link_files.FederationError:  # recorded in the link's status, which the page shows
        return redirect("/federation?done=push_failed")
    return redirect("/federation?done=pushed")


@router.get("/federation/{child_id}")
def child_page(
    request: Request, child_id: PathId, session: ConsoleDb, viewer: AdminViewer, settings: Settings
) -> Response:
    row = parent.get(session, child_id)
    year, quarter = statistics.current_quarter()
    quarters = [
        {"year": item["year"], "quarter": item["quarter"], "stats": statistics.Statistics.from_json(item["statistics"])}
        for item in row.aggregates or []
    ]
    reports = session.scalars(
        select(ReportSubmission)
        .join(FederationReceivedReport, FederationReceivedReport.submission_id == ReportSubmission.id)
        .where(FederationReceivedReport.child_id == row.id)
        .order_by(ReportSubmission.year.desc(), ReportSubmission.quarter.desc(), ReportSubmission.version.desc())
    ).all()
    context = {
        "child": parent.child_out(session, row, year, quarter, settings.federation_push_seconds),
        "quarters": quarters,
        "reports": reports,
    }
    return render(request, "federation/child.html", context, viewer=viewer)
