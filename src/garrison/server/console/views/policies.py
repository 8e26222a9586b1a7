"""Console pages of policies: the list, the form (each setting inherited or set here) and assigning policies to
units. Groups, a computer's policy and the allow-list are in :mod:`garrison.server.console.views.groups`.

Every change goes through ``policies.service`` with the viewer's scope (it checks who may change what and writes
the activity log). A policy is a *layer*: the form stores only the settings marked "set here".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.protocol.policy import SETTINGS
from garrison.server.console import i18n
from garrison.server.console.views.policy_settings import (
    ACTION_CHOICES,
    DONE,
    LIMIT_LABELS,
    LIMITS,
    SCHEDULE_ROWS,
    SETTING_HINTS,
    SETTING_LABELS,
    FormFields,
    PolicyRoute,
    explain,
    form_values,
    invalid_policy,
    name_problems,
    parse_layer,
    setting_lines,
)
from garrison.server.console.views.units import Row, tree_rows
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
from garrison.server.policies.models import Policy, PolicyAssignment
from garrison.server.units import service as units
from garrison.server.units.models import Unit

router = APIRouter(route_class=PolicyRoute, include_in_schema=False, default_response_class=HTMLResponse)


def _policy_form(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    values: Mapping[str, str],
    policy: Policy | None = None,
    errors: Mapping[str, str] | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    context = {
        "policy": policy,
        "owner": session.get(Unit, policy.owner_unit_id) if policy else None,
        "values": values,
        "errors": errors or {},
        "error": error,
        "owners": tree_rows(units.subtree(session, viewer.caller.scope)),
        "labels": SETTING_LABELS,
        "hints": SETTING_HINTS,
        "limit_labels": LIMIT_LABELS,
        "actions": ACTION_CHOICES,
        "schedule_rows": range(SCHEDULE_ROWS),
        "limits": LIMITS,
        "settings": SETTINGS,
    }
    return render(request, "policies/form.html", context, viewer=viewer, status_code=status_code)


def _changeable(session: Session, viewer: Viewer, policy_id: int) -> Policy:
    """A policy the viewer may change (403 otherwise; 404 when they may not even see it)."""
    scope = viewer.caller.scope
    policy = service.get_policy(session, scope, policy_id)
    if not scope.writable:
        raise Forbidden("read-only access")
    if not service.may_change(session, scope, policy):
        raise Forbidden("this policy belongs to a unit above yours: you may use it, not change it")
    return policy


def _head(form: Mapping[str, str]) -> dict[str, str]:
    return {
        "name": form.get("name", "").strip(),
        "description": form.get("description", "").strip(),
        "owner_unit_id": form.get("owner_unit_id", "").strip(),
    }


def _save_policy(
    request: Request, session: Session, viewer: Viewer, form: Mapping[str, str], policy: Policy | None
) -> Response:
    _ = gettext(request)
    values = {**form, **_head(form)}
    values.pop("csrf_token", None)
    settings, errors, rows = parse_layer(values, _)
    errors |= name_problems(values, _)
    if policy is None and not values["owner_unit_id"].isdigit():
        errors["owner_unit_id"] = _("Choose the unit the policy belongs to.")
    if errors:
        error = _("Please correct the fields marked below.")
        return _policy_form(
            request, session, viewer, values=values, policy=policy, errors=errors, error=error, status_code=400
        )
    scope, actor = viewer.caller.scope, viewer.caller.actor
    try:
        if policy is None:
            owner = int(values["owner_unit_id"])
            made = service.create_policy(
                session,
                scope,
                actor,
                owner_unit_id=owner,
                name=values["name"],
                description=values["description"],
                settings=settings,
            )
            done, anchor = "created", made.id
        else:
            service.update_policy(
                session,
                scope,
                actor,
                policy.id,
                name=values["name"],
                description=values["description"],
                settings=settings,
            )
            done, anchor = "saved", policy.id
    except ServerError as refused:
        session.rollback()
        if policy is not None:
            policy = service.get_policy(session, scope, policy.id)
        if isinstance(refused, BadRequest):
            error, errors = invalid_policy(refused.message, _, rows)
        else:
            error = explain(refused.message, _) or i18n.explain_error(refused, _)
        return _policy_form(
            request,
            session,
            viewer,
            values=values,
            policy=policy,
            errors=errors,
            error=error,
            status_code=refused.status,
        )
    return redirect(f"/policies?done={done}#policy-{anchor}")


@dataclass(frozen=True, slots=True)
class Listed:
    policy: Policy
    owner: str
    settings: list[tuple[str, str]]
    units: list[str]
    groups: list[str]
    may_change: bool


@router.get("/policies")
def list_page(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    _ = gettext(request)
    scope = viewer.caller.scope
    policies = service.list_policies(session, scope)
    owner_ids = {p.owner_unit_id for p in policies}
    owners = {i: n for i, n in session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(owner_ids)))}
    subtree = units.subtree(session, scope)
    names = {u.id: u.name for u in subtree}
    by_policy: dict[int, list[str]] = {}
    assigned_units = service.assignments(session, scope)
    for unit in subtree:
        if unit.id in assigned_units:
            by_policy.setdefault(assigned_units[unit.id], []).append(unit.name)
    groups_of: dict[int, list[str]] = {}
    for group in service.list_groups(session, scope):
        if group.policy_id is not None:
            groups_of.setdefault(group.policy_id, []).append(group.name)
    rows = [
        Listed(
            policy,
            owners.get(policy.owner_unit_id, names.get(policy.owner_unit_id, "")),
            setting_lines(policy.settings, _),
            by_policy.get(policy.id, []),
            groups_of.get(policy.id, []),
            service.may_change(session, scope, policy),
        )
        for policy in policies
    ]
    notice = _(DONE[done]) if done in DONE else ""
    return render(request, "policies/list.html", {"rows": rows, "notice": notice, "tab": "list"}, viewer=viewer)


@router.get("/policies/new")
def new_policy(request: Request, session: ConsoleDb, viewer: CurrentViewer) -> Response:
    if not viewer.can_write:
        raise Forbidden("read-only access")
    values = {"name": "", "description": "", "owner_unit_id": "", **form_values({})}
    return _policy_form(request, session, viewer, values=values)


@router.post("/policies/new")
def create_policy(request: Request, session: ConsoleDb, viewer: WritingViewer, form: FormFields) -> Response:
    if not viewer.can_write:
        raise Forbidden("read-only access")
    return _save_policy(request, session, viewer, form, None)


@router.get("/policies/{policy_id}/edit")
def edit_policy(request: Request, policy_id: int, session: ConsoleDb, viewer: CurrentViewer) -> Response:
    policy = _changeable(session, viewer, policy_id)
    values = {"name": policy.name, "description": policy.description, "owner_unit_id": str(policy.owner_unit_id)}
    return _policy_form(request, session, viewer, values={**values, **form_values(policy.settings)}, policy=policy)


@router.post("/policies/{policy_id}/edit")
def update_policy(
    request: Request, policy_id: int, session: ConsoleDb, viewer: WritingViewer, form: FormFields
) -> Response:
    policy = _changeable(session, viewer, policy_id)
    return _save_policy(request, session, viewer, form, policy)


@router.get("/policies/{policy_id}/delete")
def confirm_delete(request: Request, policy_id: int, session: ConsoleDb, viewer: CurrentViewer) -> Response:
    policy = _changeable(session, viewer, policy_id)
    return render(request, "policies/delete.html", {"policy": policy, "error": ""}, viewer=viewer)


@router.post("/policies/{policy_id}/delete")
def delete_policy(request: Request, policy_id: int, session: ConsoleDb, viewer: WritingViewer) -> Response:
    _ = gettext(request)
    policy = _changeable(session, viewer, policy_id)
    try:
        service.delete_policy(session, viewer.caller.scope, viewer.caller.actor, policy.id)
    except ServerError as refused:
        session.rollback()
        policy = service.get_policy(session, viewer.caller.scope, policy_id)
        error = explain(refused.message, _) or i18n.explain_error(refused, _)
        context = {"policy": policy, "error": error}
        return render(request, "policies/delete.html", context, viewer=viewer, status_code=refused.status)
    return redirect("/policies?done=deleted")


# -- assignment to units --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssignRow:
    row: Row
    policy_id: int | None
    inherited: list[str]  # the policies of the units above, top first


def _inherited(session: Session, units_shown: Sequence[Unit]) -> dict[int, list[str]]:
    """For each unit, the names of the policies assigned to the units above it (inside the scope or not)."""
    above: set[int] = set()
    for unit in units_shown:
        above.update(service.ancestor_ids(unit.path)[:-1])
    layers = {
        unit_id: name
        for unit_id, name in session.execute(
            select(PolicyAssignment.unit_id, Policy.name)
            .join(Policy, Policy.id == PolicyAssignment.policy_id)
            .where(PolicyAssignment.unit_id.in_(above))
        )
    }
    return {unit.id: [layers[i] for i in service.ancestor_ids(unit.path)[:-1] if i in layers] for unit in units_shown}


@router.get("/policies/assign")
def assign_page(request: Request, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    _ = gettext(request)
    scope = viewer.caller.scope
    subtree = units.subtree(session, scope)
    current = service.assignments(session, scope)
    inherited = _inherited(session, subtree)
    rows = [AssignRow(r, current.get(r.unit.id), inherited[r.unit.id]) for r in tree_rows(subtree)]
    policies = service.list_policies(session, scope)
    context = {
        "rows": rows,
        "policies": policies,
        "policy_names": {p.id: p.name for p in policies},
        "notice": _(DONE[done]) if done in DONE else "",
        "tab": "assign",
    }
    return render(request, "policies/assign.html", context, viewer=viewer)


@router.post("/policies/assign/{unit_id}")
def assign(
    unit_id: int,
    session: ConsoleDb,
    viewer: WritingViewer,
    policy_id: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    if policy_id and not policy_id.isdigit():
        raise BadRequest("the form is not valid")
    chosen = int(policy_id) if policy_id else None
    service.assign(session, viewer.caller.scope, viewer.caller.actor, unit_id, chosen)
    return redirect(f"/policies/assign?done=assigned#unit-{unit_id}")
