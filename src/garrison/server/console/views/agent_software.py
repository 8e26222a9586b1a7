"""Console page of agent software: the Garrison versions offered to the computers through the update channel
(uploaded as a wheel, canary group first), how many computers run each, and promoting or pulling a version.

Everyone logged in reads; only a province administrator changes anything, through ``updates.rollout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import File, Form, Request, Response, UploadFile
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from garrison.server.agents.models import Agent
from garrison.server.console.views.updates import DONE, page_helpers, refusal_text, user_names
from garrison.server.console.web import (
    AdminViewer,
    AdminWriter,
    ConsoleDb,
    CurrentViewer,
    Viewer,
    console_router,
    gettext,
    redirect,
    render,
)
from garrison.server.errors import BadRequest, NotFound, ServerError
from garrison.server.units import service as units
from garrison.server.updates import releases, rollout
from garrison.server.updates.api import MAX_WHEEL_BYTES, get_repository
from garrison.server.updates.models import AgentRelease, Stage

router = console_router()


def _agent_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    template: str = "updates/agent_software.html",
    chosen: AgentRelease | None = None,
    values: Mapping[str, str] | None = None,
    error: str = "",
    done: str = "",
    status_code: int = 200,
) -> Response:
    _ = gettext(request)
    rows = rollout.agent_releases(session)
    scope = viewer.caller.scope
    query = select(Agent.agent_version, func.count()).where(Agent.revoked.is_(False)).group_by(Agent.agent_version)
    versions = {v: n for v, n in session.execute(units.within(query, scope, Agent.unit_id))}
    offer = rollout.current_offer(session)
    context = {
        "agent_releases": rows,
        "versions": versions,
        "offer": offer,
        "rollout": releases.rollout_settings(session),
        "people": user_names(session, {r.created_by for r in rows}),
        "chosen": chosen,
        "values": values or {"version": "", "notes": ""},
        "max_mib": MAX_WHEEL_BYTES // (1024 * 1024),
        "notice": _(DONE[done]) if done in DONE else "",
        "error": error,
        "tab": "agent",
        **page_helpers(request),
    }
    return render(request, template, context, viewer=viewer, status_code=status_code)


def _agent_release(session: Session, version: str) -> AgentRelease:
    row = session.get(AgentRelease, version)
    if row is None:
        raise NotFound("no such page")
    return row


@router.get("/updates/agent-software")
def agent_software(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    return _agent_page(request, session, viewer, done=done)


@router.post("/updates/agent-software")
def add_agent_software(
    request: Request,
    session: ConsoleDb,
    viewer: AdminWriter,
    version: Annotated[str, Form(max_length=64)] = "",
    notes: Annotated[str, Form(max_length=2000)] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    _ = gettext(request)
    values = {"version": version, "notes": notes}
    try:
        if file is None or not file.filename:
            raise BadRequest("choose a file")
        wheel = file.file.read(MAX_WHEEL_BYTES + 1)
        if len(wheel) > MAX_WHEEL_BYTES:
            raise BadRequest(f"an agent wheel may be at most {MAX_WHEEL_BYTES // (1024 * 1024)} MiB")
        rollout.add_agent_release(
            session, get_repository(request), viewer.caller.actor, version.strip(), wheel, notes=notes.strip()
        )
    except ServerError as refused:
        session.rollback()
        return _agent_page(
            request, session, viewer, values=values, error=refusal_text(refused, _), status_code=refused.status
        )
    return redirect("/updates/agent-software?done=agent_added")


_AGENT_ACTIONS = {"promote": (Stage.GENERAL, "agent_promoted"), "pull": (Stage.PULLED, "agent_pulled")}


@router.get("/updates/agent-software/{version}/{action}")
def agent_confirm(request: Request, version: str, action: str, session: ConsoleDb, viewer: AdminViewer) -> Response:
    if action not in _AGENT_ACTIONS:
        raise NotFound("no such page")
    row = _agent_release(session, version)
    return _agent_page(
        request, session, viewer, template="updates/agent_confirm.html", chosen=row, values={"action": action}
    )


@router.post("/updates/agent-software/{version}/{action}")
def agent_stage(request: Request, version: str, action: str, session: ConsoleDb, viewer: AdminWriter) -> Response:
    if action not in _AGENT_ACTIONS:
        raise NotFound("no such page")
    _ = gettext(request)
    stage, done = _AGENT_ACTIONS[action]
    _agent_release(session, version)
    try:
        rollout.set_agent_stage(session, viewer.caller.actor, version, stage)
    except ServerError as refused:
        session.rollback()
        return _agent_page(request, session, viewer, error=refusal_text(refused, _), status_code=refused.status)
    return redirect(f"/updates/agent-software?done={done}#agent-{version}")
