"""Console pages of the people who use the console: the list and the form that adds one.

Users are listed and created by ``auth.service`` with the viewer's scope: a unit administrator sees and adds
people of their subtree only, and only a province administrator adds administrators.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request, Response
from sqlalchemy.orm import Session

from garrison.server.auth import service as auth
from garrison.server.auth.models import Role
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
from garrison.server.errors import ServerError
from garrison.server.units import service as units

router = console_router()


@router.get("/users")
def list_users(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    _ = gettext(request)
    names = {u.id: u.name for u in units.subtree(session, viewer.caller.scope)}
    people = auth.list_users(session, viewer.caller.scope)
    notice = _("The user was added. Give them their username and password in person.") if done == "created" else ""
    return render(request, "users/list.html", {"people": people, "unit_names": names, "notice": notice}, viewer=viewer)


def _form(
    request: Request,
    session: Session,
    viewer: Viewer,
    values: dict[str, str],
    error: str = "",
    status_code: int = 200,
) -> Response:
    roles = [r.value for r in Role if r is not Role.ADMIN or viewer.is_admin]
    context = {
        "values": values,
        "error": error,
        "roles": roles,
        "units": tree_rows(units.subtree(session, viewer.caller.scope)),
    }
    return render(request, "users/form.html", context, viewer=viewer, status_code=status_code)


@router.get("/users/new")
def new_user(request: Request, session: ConsoleDb, viewer: CurrentViewer, unit: int | None = None) -> Response:
    values = {"username": "", "display_name": "", "role": Role.UNIT_ADMIN.value, "unit_id": str(unit or "")}
    return _form(request, session, viewer, values)


@router.post("/users/new")
def create_user(
    request: Request,
    session: ConsoleDb,
    viewer: WritingViewer,
    username: Annotated[str, Form(max_length=64)] = "",
    display_name: Annotated[str, Form(max_length=255)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    password_again: Annotated[str, Form(max_length=1024)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    unit_id: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    _ = gettext(request)
    values = {"username": username, "display_name": display_name, "role": role, "unit_id": unit_id}
    error = ""
    if not username.strip():
        error = _("Enter a username.")
    elif role not in {r.value for r in Role}:
        error = _("Choose a role.")
    elif password != password_again:
        error = _("The two passwords are not the same.")
    elif unit_id and not unit_id.isdigit():
        error = _("Choose the unit this person belongs to.")
    if error:
        return _form(request, session, viewer, values, error, status_code=400)
    new = auth.NewUser(username, display_name, password, Role(role), int(unit_id) if unit_id else None)
    try:
        auth.create_user(session, viewer.caller.scope, viewer.caller.actor, new)
    except ServerError as refused:
        session.rollback()
        return _form(request, session, viewer, values, i18n.explain_error(refused, _), status_code=refused.status)
    return redirect("/users?done=created")
