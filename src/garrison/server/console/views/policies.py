"""Console pages of policies: the list, the form (each setting inherited or set here), assigning policies to
units, agent groups, a computer's effective policy (an htmx fragment of its page) and the fleet-wide allow-list.

Every change goes through ``policies.service`` with the viewer's scope (it checks who may change what and writes
the activity log). A policy is a *layer*: the form stores only the settings marked "set here". The service's
English messages about policies are put into plain words here, and shown in the form next to their field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from garrison.protocol.policy import SETTINGS, AgentPolicy
from garrison.server.agents import service as agents
from garrison.server.agents.models import Agent
from garrison.server.auth.models import User
from garrison.server.console import i18n
from garrison.server.console.i18n import N_
from garrison.server.console.views.units import Row, tree_rows
from garrison.server.console.web import (
    ConsoleDb,
    ConsoleRoute,
    CurrentViewer,
    Viewer,
    WritingViewer,
    gettext,
    redirect,
    render,
)
from garrison.server.errors import BadRequest, Forbidden, ServerError
from garrison.server.policies import service
from garrison.server.policies.models import AgentGroup, Policy, PolicyAssignment
from garrison.server.units import service as units
from garrison.server.units.models import Unit

#: Rows of scheduled scans the form offers.
SCHEDULE_ROWS = 5
LIMITS = ("max_file_mb", "max_scan_mb", "max_depth", "max_members", "max_scan_seconds")
LIST_SETTINGS = ("scan_paths", "exclude", "realtime_paths")
ACTION_SETTINGS = ("action", "realtime_action")
NUMBER_SETTINGS = ("heartbeat_seconds", "update_seconds")
#: What the form proposes for a setting not set here (a starting point when someone switches it to "set here"; an
#: inherited setting is not stored, so these apply to no computer).
SUGGESTED: dict[str, Any] = {
    "scan_paths": ["/"],
    "exclude": ["/proc/*", "/sys/*", "/dev/*", "/run/*"],
    "realtime_enabled": True,
    "realtime_paths": ["/home", "/tmp"],  # noqa: S108 (paths to watch, not to write)
    "realtime_action": "quarantine",
}
MAX_NAME = 128
MAX_DESCRIPTION = 4000

SETTING_LABELS = {
    "scan_paths": N_("What a scan covers"),
    "exclude": N_("Never scanned"),
    "action": N_("When a scan finds a threat"),
    "schedules": N_("Scheduled scans"),
    "realtime_enabled": N_("Real-time protection"),
    "realtime_paths": N_("Folders watched in real time"),
    "realtime_action": N_("When real-time protection finds a threat"),
    "heartbeat_seconds": N_("Report to the server every"),
    "update_seconds": N_("Look for new signatures every"),
    "limits": N_("Scan limits"),
}
SETTING_HINTS = {
    "scan_paths": N_("The folders a scan reads when it names none (scheduled scans, “scan now”). One per line."),
    "exclude": N_(
        "Files and folders no scan ever reads, one per line. * stands for any name, for example /proc/* or "
        "C:\\Backup\\*"
    ),
    "action": N_("For scheduled scans and scans started from this console."),
    "schedules": N_(
        "When scans run by themselves. The time is written as five fields: minute, hour, day of the month, month, "
        "day of the week. “0 12 * * 1-5” = 12 noon on weekdays; “30 7 * * *” = 7:30 every day; “0 22 * * 5” = "
        "10 p.m. on Fridays. Each computer waits a random number of minutes (at most the delay) so that they do "
        "not all start together. An empty list means: no scheduled scans."
    ),
    "realtime_enabled": N_("Checks files as soon as they are written or opened."),
    "realtime_paths": N_("Where downloads and attachments land. One folder per line."),
    "realtime_action": N_("Quarantine is the safe choice: the file can be restored if it was a false alarm."),
    "heartbeat_seconds": N_("In seconds, from 10 to 86,400. The computer's state on this console is as fresh as this."),
    "update_seconds": N_("In seconds, from 60 to 604,800 (7 days)."),
    "limits": N_("Leave a box empty to keep the engine's own limit. Larger limits find more, but scan slower."),
}
LIMIT_LABELS = {
    "max_file_mb": N_("Largest file scanned (MB)"),
    "max_scan_mb": N_("Most data read from one file, archives unpacked (MB)"),
    "max_depth": N_("Archives inside archives: deepest level"),
    "max_members": N_("Most files read inside one archive"),
    "max_scan_seconds": N_("Longest time spent on one file (seconds)"),
}
ACTION_CHOICES = {
    "report": N_("Report only"),
    "quarantine": N_("Quarantine the file"),
    "delete": N_("Delete the file"),
}
DONE = {
    "created": N_("The policy was added."),
    "saved": N_("The policy was saved. The computers it applies to receive it at their next report."),
    "deleted": N_("The policy was deleted."),
    "assigned": N_("The unit's policy was saved."),
    "group_saved": N_("The group was saved."),
    "group_deleted": N_("The group was deleted; its computers keep their unit's policy."),
    "removed": N_("The file was taken off the allow-list."),
}

# Pydantic's words about one setting, in plain words.
_PROBLEMS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), m)
    for p, m in [
        (
            r"Value error, a schedule has five fields.*",
            N_("a time has five fields: minute, hour, day of the month, month, day of the week (e.g. 0 12 * * 1-5)"),
        ),
        (r"Value error, not a valid schedule: '(?P<value>.*)'", N_("“%(value)s” is not a valid time")),
        (r"Input should be greater than or equal to (?P<n>\d+)", N_("it must be at least %(n)s")),
        (r"Input should be less than or equal to (?P<n>\d+)", N_("it must be at most %(n)s")),
        (r"Input should be 'report', 'quarantine' or 'delete'", N_("choose what to do")),
        (r"List should have at most (?P<n>\d+) items.*", N_("at most %(n)s lines")),
        (r"String should have at most (?P<n>\d+) characters", N_("at most %(n)s characters")),
    ]
]
_INVALID = re.compile(r"invalid policy: (?P<problems>.*)", re.DOTALL)
_PROBLEM = re.compile(r"(?P<loc>[\w.]+): (?P<msg>.*)", re.DOTALL)


def explain(message: str, _: i18n.Gettext) -> str | None:
    """An invalid policy's problems in plain words, or ``None`` when the message is not about one (the other
    messages of the policy service are in ``i18n.explain``)."""
    if _INVALID.fullmatch(message):
        return invalid_policy(message, _, [])[0]
    return None


def _problem(text: str, _: i18n.Gettext) -> str:
    for pattern, translated in _PROBLEMS:
        found = pattern.fullmatch(text)
        if found:
            return _(translated) % found.groupdict()
    return text


def invalid_policy(message: str, _: i18n.Gettext, rows: Sequence[int]) -> tuple[str, dict[str, str]]:
    """The service's "invalid policy: …" as one sentence and as problems by form field (``rows``: the form row
    of each scheduled scan sent)."""
    found = _INVALID.fullmatch(message)
    if not found:
        return message, {}
    parts, fields = [], {}
    for item in found["problems"].split("; "):
        problem = _PROBLEM.fullmatch(item)
        if not problem:
            parts.append(item)
            continue
        loc = problem["loc"].split(".")
        text = _problem(problem["msg"], _)
        setting = loc[0]
        label = _(SETTING_LABELS[setting]) if setting in SETTING_LABELS else setting
        field = setting
        if setting == "schedules" and len(loc) >= 2 and loc[1].isdigit():
            index = int(loc[1])
            row = rows[index] if index < len(rows) else index
            label = _("Scheduled scan %(n)s") % {"n": row + 1}
            field = f"schedule_{'delay' if loc[-1] == 'random_delay_minutes' else loc[-1]}_{row}"
        elif setting == "limits" and len(loc) >= 2 and loc[1] in LIMIT_LABELS:
            label, field = _(LIMIT_LABELS[loc[1]]), loc[1]
        parts.append(f"{label}: {text}")
        fields[field] = text
    return _("The policy was not saved: %(problems)s.") % {"problems": "; ".join(parts)}, fields


def _explained(error: ServerError, request: Request) -> ServerError:
    """``error`` with its message in the reader's words when it is one of the policy service's."""
    words = explain(error.message, gettext(request))
    return error if words is None else type(error)(words)


class _Explaining(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def explaining_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ServerError as exc:
                raise _explained(exc, request) from exc

        return explaining_handler


class PolicyRoute(ConsoleRoute, _Explaining):
    """A console route (errors as pages) whose policy errors are put in plain words first."""


router = APIRouter(route_class=PolicyRoute, include_in_schema=False, default_response_class=HTMLResponse)


async def _form_fields(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


FormFields = Annotated[dict[str, str], Depends(_form_fields)]


# -- settings in plain words ----------------------------------------------------------------------------------


def _duration(seconds: int, _: i18n.Gettext) -> str:
    if seconds % 3600 == 0:
        return _("%(n)s hours") % {"n": seconds // 3600} if seconds != 3600 else _("1 hour")
    if seconds % 60 == 0:
        return _("%(n)s minutes") % {"n": seconds // 60}
    return _("%(n)s seconds") % {"n": seconds}


def _paths(values: Sequence[str], _: i18n.Gettext) -> str:
    return ", ".join(values) if values else _("(none)")


def describe(setting: str, value: Any, _: i18n.Gettext) -> str:
    """A setting's value as a civil servant would say it."""
    if setting in LIST_SETTINGS:
        return _paths(value, _)
    if setting in ACTION_SETTINGS:
        code = getattr(value, "value", value)
        return _(ACTION_CHOICES[code]) if code in ACTION_CHOICES else str(code)
    if setting == "realtime_enabled":
        return _("On") if value else _("Off")
    if setting in NUMBER_SETTINGS:
        return _duration(int(value), _)
    if setting == "schedules":
        if not value:
            return _("no scheduled scans")
        runs = []
        for item in value:
            scan = item if isinstance(item, dict) else item.model_dump()
            where = _paths(scan.get("paths") or [], _) if scan.get("paths") else _("the usual folders")
            delay = _("random delay up to %(n)s minutes") % {"n": scan.get("random_delay_minutes", 30)}
            runs.append(f"{scan['cron']} ({where}; {delay})")
        return "; ".join(runs)
    if setting == "limits":
        limits = value if isinstance(value, dict) else value.model_dump()
        chosen = [f"{_(LIMIT_LABELS[k])}: {limits[k]}" for k in LIMITS if limits.get(k) is not None]
        return "; ".join(chosen) if chosen else _("the engine's own limits")
    return str(value)


def setting_lines(settings: Mapping[str, Any], _: i18n.Gettext) -> list[tuple[str, str]]:
    """``(label, value)`` of each setting a layer sets, in the form's order."""
    return [(_(SETTING_LABELS[name]), describe(name, settings[name], _)) for name in SETTINGS if name in settings]


# -- the policy form ------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def form_values(settings: Mapping[str, Any]) -> dict[str, str]:
    """The form's fields for a layer: its settings marked "set here", the others showing a suggestion."""
    full = AgentPolicy.model_validate({**SUGGESTED, **settings}).model_dump(mode="json")
    values = {f"mode_{name}": "set" if name in settings else "inherit" for name in SETTINGS}
    for name in LIST_SETTINGS:
        values[name] = "\n".join(full[name])
    for name in ACTION_SETTINGS:
        values[name] = full[name]
    for name in NUMBER_SETTINGS:
        values[name] = str(full[name])
    values["realtime_enabled"] = "on" if full["realtime_enabled"] else "off"
    for key in LIMITS:
        values[key] = "" if full["limits"][key] is None else str(full["limits"][key])
    for row in range(SCHEDULE_ROWS):
        scan = full["schedules"][row] if row < len(full["schedules"]) else {}
        values[f"schedule_cron_{row}"] = scan.get("cron", "")
        values[f"schedule_paths_{row}"] = "\n".join(scan.get("paths", []))
        values[f"schedule_delay_{row}"] = str(scan.get("random_delay_minutes", 30))
    return values


def _whole(text: str, field: str, errors: dict[str, str], _: i18n.Gettext) -> int | None:
    text = text.strip()
    if re.fullmatch(r"-?\d{1,9}", text):
        return int(text)
    errors[field] = _("Enter a whole number.")
    return None


def parse_layer(values: Mapping[str, str], _: i18n.Gettext) -> tuple[dict[str, Any], dict[str, str], list[int]]:
    """The settings marked "set here", the problems by field, and the form row of each scheduled scan sent."""
    settings: dict[str, Any] = {}
    errors: dict[str, str] = {}
    rows: list[int] = []
    for name in SETTINGS:
        if values.get(f"mode_{name}") != "set":
            continue
        raw = values.get(name, "")
        if name in LIST_SETTINGS:
            settings[name] = _lines(raw)
        elif name in ACTION_SETTINGS:
            settings[name] = raw
        elif name in NUMBER_SETTINGS:
            settings[name] = _whole(raw, name, errors, _)
        elif name == "realtime_enabled":
            settings[name] = raw == "on"
        elif name == "limits":
            limits = {key: _whole(values[key], key, errors, _) for key in LIMITS if values.get(key, "").strip()}
            settings[name] = limits
        elif name == "schedules":
            scans = []
            for row in range(SCHEDULE_ROWS):
                cron = values.get(f"schedule_cron_{row}", "").strip()
                paths = _lines(values.get(f"schedule_paths_{row}", ""))
                if not cron:
                    if paths:
                        errors[f"schedule_cron_{row}"] = _("Enter when this scan runs.")
                    continue
                delay_text = values.get(f"schedule_delay_{row}", "").strip() or "30"
                delay = _whole(delay_text, f"schedule_delay_{row}", errors, _)
                scans.append({"cron": cron, "paths": paths, "random_delay_minutes": delay})
                rows.append(row)
            settings[name] = scans
    return settings, errors, rows


def _name_problems(values: Mapping[str, str], _: i18n.Gettext) -> dict[str, str]:
    errors = {}
    if not values["name"] or len(values["name"]) > MAX_NAME:
        errors["name"] = _("Enter a name (at most %(n)s characters).") % {"n": MAX_NAME}
    if len(values["description"]) > MAX_DESCRIPTION:
        errors["description"] = _("The description is too long (at most %(n)s characters).") % {"n": MAX_DESCRIPTION}
    return errors


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
    errors |= _name_problems(values, _)
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
    errors = _name_problems(values, _)
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
