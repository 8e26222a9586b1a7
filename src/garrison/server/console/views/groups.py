"""Console pages of agent groups, a computer's effective policy (an htmx fragment of its page, with where each
setting comes from) and the fleet-wide allow-list."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from garrison.protocol.policy import SETTINGS
from garrison.server.agents import service as agents
from garrison.server.agents.models import Agent
from garrison.server.auth.models import User
from garrison.server.console import i18n
from garrison.server.console.views.policy_settings import (
    DONE,
    SETTING_LABELS,
    FormFields,
    PolicyRoute,
    describe,
    explain,
    name_problems,
)
from garrison.server.console.views.units import tree_rows
from garrison.server.console.web import (
    ConsoleDb,
    CurrentViewer,
    Viewer,
    WritingViewer,
    gettext,
    redirect,
    render,
)
from garrison.server.errors import BadRequest, Forbidden, ServerError
from garrison.server.policies import service
from garrison.server.policies.models import AgentGroup
from garrison.server.units import service as units
from garrison.server.units.models import Unit

router = APIRouter(route_class=PolicyRoute, include_in_schema=False, default_response_class=HTMLResponse)


# -- groups ---------------------------------------------------------------------------------------------------


@router.get("/policies/groups")
def groups_page(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    _ = gettext(request)
    scope = viewer.caller.scope
    groups = service.list_groups(session, scope)
    unit_names = {u.id: u.name for u in units.subtree(session, scope)}
    policy_names = {p.id: p.name for p in service.list_policies(session, scope)}
    counts = {
        group_id: count
        for group_id, count in session.execute(
            select(Agent.group_id, func.count())
            .where(Agent.group_id.in_([g.id for g in groups]))
            .group_by(Agent.group_id)
        )
    }
    context = {
        "groups": groups,
        "unit_names": unit_names,
        "policy_names": policy_names,
        "counts": counts,
        "notice": _(DONE[done]) if done in DONE else "",
        "tab": "groups",
    }
    return render(request, "policies/groups.html", context, viewer=viewer)


def _group_form(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    values: Mapping[str, str],
    group: AgentGroup | None = None,
    errors: Mapping[str, str] | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    scope = viewer.caller.scope
    context = {
        "group": group,
        "values": values,
        "errors": errors or {},
        "error": error,
        "unit_rows": tree_rows(units.subtree(session, scope)),
        "policies": service.list_policies(session, scope),
    }
    return render(request, "policies/group_form.html", context, viewer=viewer, status_code=status_code)


@router.get("/policies/groups/new")
def new_group(request: Request, session: ConsoleDb, viewer: CurrentViewer) -> Response:
    if not viewer.can_write:
        raise Forbidden("read-only access")
    values = {"name": "", "description": "", "unit_id": "", "policy_id": ""}
    return _group_form(request, session, viewer, values=values)


@router.get("/policies/groups/{group_id}/edit")
def edit_group(request: Request, group_id: int, session: ConsoleDb, viewer: CurrentViewer) -> Response:
    group = service.get_group(session, viewer.caller.scope, group_id)
    if not viewer.can_write:
        raise Forbidden("read-only access")
    values = {
        "name": group.name,
        "description": group.description,
        "unit_id": str(group.unit_id),
        "policy_id": str(group.policy_id or ""),
    }
    return _group_form(request, session, viewer, values=values, group=group)


def _save_group(
    request: Request, session: Session, viewer: Viewer, form: Mapping[str, str], group_id: int | None
) -> Response:
    _ = gettext(request)
    scope = viewer.caller.scope
    group = service.get_group(session, scope, group_id) if group_id is not None else None
    values = {key: form.get(key, "").strip() for key in ("name", "description", "unit_id", "policy_id")}
    errors = name_problems(values, _)
    if not values["unit_id"].isdigit():
        errors["unit_id"] = _("Choose the unit the group belongs to.")
    if values["policy_id"] and not values["policy_id"].isdigit():
        errors["policy_id"] = _("Choose a policy.")
    if errors:
        error = _("Please correct the fields marked below.")
        return _group_form(
            request, session, viewer, values=values, group=group, errors=errors, error=error, status_code=400
        )
    try:
        service.save_group(
            session,
            scope,
            viewer.caller.actor,
            group_id,
            unit_id=int(values["unit_id"]),
            name=values["name"],
            description=values["description"],
            policy_id=int(values["policy_id"]) if values["policy_id"] else None,
        )
    except ServerError as refused:
        session.rollback()
        group = service.get_group(session, scope, group_id) if group_id is not None else None
        error = explain(refused.message, _) or i18n.explain_error(refused, _)
        return _group_form(
            request, session, viewer, values=values, group=group, error=error, status_code=refused.status
        )
    return redirect("/policies/groups?done=group_saved")


@router.post("/policies/groups/new")
def create_group(request: Request, session: ConsoleDb, viewer: WritingViewer, form: FormFields) -> Response:
    if not viewer.can_write:
        raise Forbidden("read-only access")
    return _save_group(request, session, viewer, form, None)


@router.post("/policies/groups/{group_id}/edit")
def update_group(
    request: Request, group_id: int, session: ConsoleDb, viewer: WritingViewer, form: FormFields
) -> Response:
    if not viewer.can_write:
        raise Forbidden("read-only access")
    return _save_group(request, session, viewer, form, group_id)


@router.post("/policies/groups/{group_id}/delete")
def delete_group(group_id: int, session: ConsoleDb, viewer: WritingViewer) -> Response:
    service.delete_group(session, viewer.caller.scope, viewer.caller.actor, group_id)
    return redirect("/policies/groups?done=group_deleted")


# -- a computer's policy --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Effective:
    label: str
    value: str  # "" when no policy sets it (the computer's own configuration applies)
    source: str  # in words; "" when no policy sets it


def _source_words(session: Session, applies_to: str, policy_name: str, _: i18n.Gettext) -> str:
    kind, _sep, ident = applies_to.partition(" ")
    if kind == "group":
        group = session.get(AgentGroup, int(ident))
        return _("Group %(group)s: policy %(policy)s") % {
            "group": group.name if group else ident,
            "policy": policy_name,
        }
    unit = session.get(Unit, int(ident))
    return _("Unit %(unit)s: policy %(policy)s") % {"unit": unit.name if unit else ident, "policy": policy_name}


@router.get("/agents/{agent_id}/policy-section")
def agent_section(request: Request, agent_id: str, session: ConsoleDb, viewer: CurrentViewer) -> Response:
    _ = gettext(request)
    scope = viewer.caller.scope
    agent = agents.get_agent(session, scope, agent_id)
    document = service.document_for(session, agent)
    sources = [(s, _source_words(session, s.applies_to, s.name, _)) for s in document.sources]
    settings = document.policy.model_dump()
    rows = []
    for name in SETTINGS:
        chosen = [words for source, words in sources if name in source.settings]
        if name not in document.enforced or not chosen:
            rows.append(Effective(_(SETTING_LABELS[name]), "", ""))
            continue
        rows.append(Effective(_(SETTING_LABELS[name]), describe(name, settings[name], _), chosen[-1]))
    unit_path = session.scalar(select(Unit.path).where(Unit.id == agent.unit_id)) or ""
    groups = service.list_groups(session, scope)
    group_paths = {
        i: path
        for i, path in session.execute(select(Unit.id, Unit.path).where(Unit.id.in_({g.unit_id for g in groups})))
    }
    choices = [g for g in groups if unit_path.startswith(group_paths.get(g.unit_id, "\0"))]
    current = session.get(AgentGroup, agent.group_id) if agent.group_id is not None else None
    context = {
        "agent": agent,
        "rows": rows,
        "sources": [words for _source, words in sources],
        "applied": bool(agent.policy_revision) and agent.policy_revision == document.revision,
        "reported": bool(agent.policy_revision),
        "groups": choices,
        "group": current,
    }
    # htmx loads the section into the computer's page; without JavaScript, the link opens it as a page.
    template = "policies/agent_section.html" if request.headers.get("HX-Request") else "policies/agent_page.html"
    return render(request, template, context, viewer=viewer)


@router.post("/agents/{agent_id}/group")
def set_group(
    agent_id: str,
    session: ConsoleDb,
    viewer: WritingViewer,
    group_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    if group_id and not group_id.isdigit():
        raise BadRequest("the form is not valid")
    agent = agents.get_agent(session, viewer.caller.scope, agent_id)
    service.set_group(session, viewer.caller.scope, viewer.caller.actor, agent, int(group_id) if group_id else None)
    return redirect(f"/agents/{agent.id}#policy")


# -- the allow-list -------------------------------------------------------------------------------------------


@router.get("/policies/allowlist")
def allowlist_page(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    _ = gettext(request)
    files = service.allowed_files(session)
    people = {f.added_by for f in files if f.added_by is not None}
    names = {i: n for i, n in session.execute(select(User.id, User.display_name).where(User.id.in_(people)))}
    context = {
        "files": files,
        "names": names,
        "notice": _(DONE[done]) if done in DONE else "",
        "tab": "allowlist",
    }
    return render(request, "policies/allowlist.html", context, viewer=viewer)


@router.post("/policies/allowlist/{sha256}/remove")
def disallow(sha256: str, session: ConsoleDb, viewer: WritingViewer) -> Response:
    service.disallow_file(session, viewer.caller.scope, viewer.caller.actor, sha256)
    return redirect("/policies/allowlist?done=removed")


@router.post("/detections/{detection_id}/allow")
def allow_detection(
    request: Request,
    detection_id: str,
    session: ConsoleDb,
    viewer: WritingViewer,
    reason: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    _ = gettext(request)
    if not reason.strip():
        raise BadRequest(_("Write why this file is safe (for example: the accounting software of the department)."))
    service.allow_detection(session, viewer.caller.scope, viewer.caller.actor, detection_id, reason.strip())
    return redirect(f"/detections/{detection_id}?done=allowed")
