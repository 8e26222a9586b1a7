"""Console page of enrollment tokens: the list, the form that makes one, and revoking one.

A new token is shown once, in the answer to the form, inside the ready-to-copy command that installs an agent:
``garrison agent enroll --server <URL> --token <TOKEN> --fingerprint <SHA256>``. The server URL is the one the
browser used; the fingerprint is that of the self-signed certificate ``garrison server run`` keeps in the data
directory (a server started with its own certificate, or behind a proxy, cannot know it: the page says so).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request, Response
from sqlalchemy.orm import Session

from garrison.server import tls
from garrison.server.agents import service
from garrison.server.console import i18n
from garrison.server.console.views.units import tree_rows
from garrison.server.console.web import (
    ConsoleDb,
    CurrentViewer,
    Viewer,
    WritingViewer,
    console_router,
    gettext,
    redirect,
    render,
)
from garrison.server.db import utcnow
from garrison.server.deps import Settings
from garrison.server.errors import ServerError
from garrison.server.settings import ServerSettings
from garrison.server.units import service as units

router = console_router()

FINGERPRINT_PLACEHOLDER = "<SHA256>"


def server_fingerprint(settings: ServerSettings) -> str | None:
    """The fingerprint of the self-signed certificate in the data directory, if there is one."""
    return tls.data_dir_fingerprint(settings.data_dir)


def enroll_command(server: str, token: str, fingerprint: str | None) -> str:
    pin = fingerprint or FINGERPRINT_PLACEHOLDER
    return f"garrison agent enroll --server {server} --token {token} --fingerprint {pin}"


def _page(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    values: dict[str, str] | None = None,
    created: dict[str, str] | None = None,
    error: str = "",
    notice: str = "",
    status_code: int = 200,
) -> Response:
    rows = tree_rows(units.subtree(session, viewer.caller.scope))
    context = {
        "tokens": service.enrollment_tokens(session, viewer.caller.scope),
        "unit_names": {r.unit.id: r.unit.name for r in rows},
        "units": rows,
        "values": values or {"unit_id": "", "name": "", "days": "7", "max_uses": ""},
        "created": created,
        "error": error,
        "notice": notice,
        "now": utcnow(),
        "aware": service.aware,
    }
    return render(request, "enrollment/list.html", context, viewer=viewer, status_code=status_code)


@router.get("/enrollment")
def tokens(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    _ = gettext(request)
    notice = _("The token was revoked: no new agent can enroll with it.") if done == "revoked" else ""
    return _page(request, session, viewer, notice=notice)


@router.post("/enrollment")
def create_token(
    request: Request,
    session: ConsoleDb,
    viewer: WritingViewer,
    settings: Settings,
    unit_id: Annotated[str, Form(max_length=16)] = "",
    name: Annotated[str, Form(max_length=128)] = "",
    days: Annotated[str, Form(max_length=16)] = "7",
    max_uses: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    _ = gettext(request)
    values = {"unit_id": unit_id, "name": name.strip(), "days": days.strip(), "max_uses": max_uses.strip()}
    error = ""
    if not unit_id.isdigit():
        error = _("Choose the unit whose computers will use this token.")
    elif not values["name"]:
        error = _("Enter a name for the token, for example the building or the batch of computers.")
    elif not values["days"].isdigit() or not 1 <= int(values["days"]) <= 365:
        error = _("The number of days must be a whole number from 1 to 365.")
    elif values["max_uses"] and (not values["max_uses"].isdigit() or int(values["max_uses"]) < 1):
        error = _("The number of uses must be a whole number of at least 1, or empty for no limit.")
    if error:
        return _page(request, session, viewer, values=values, error=error, status_code=400)
    try:
        row, token = service.create_enrollment_token(
            session,
            viewer.caller.scope,
            viewer.caller.actor,
            int(unit_id),
            values["name"],
            int(values["days"]),
            int(values["max_uses"]) if values["max_uses"] else None,
        )
    except ServerError as refused:
        session.rollback()
        error = i18n.explain_error(refused, _)
        return _page(request, session, viewer, values=values, error=error, status_code=refused.status)
    server = str(request.base_url).rstrip("/")
    fingerprint = server_fingerprint(settings) if request.url.scheme == "https" else None
    created = {
        "name": row.name,
        "token": token,
        "command": enroll_command(server, token, fingerprint),
        "fingerprint": fingerprint or "",
        "https": "yes" if request.url.scheme == "https" else "",
    }
    return _page(request, session, viewer, created=created)


@router.post("/enrollment/{token_id}/revoke")
def revoke_token(request: Request, token_id: int, session: ConsoleDb, viewer: WritingViewer) -> Response:
    service.revoke_enrollment_token(session, viewer.caller.scope, viewer.caller.actor, token_id)
    return redirect("/enrollment?done=revoked")
