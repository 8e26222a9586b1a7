"""Console pages of tasks: the list (filtered by kind, with each task's progress) and its CSV export, the form that
starts a scan, an update or a file collection, one task's page (its parameters, the computers by state — above all
the ones that have not run it yet —, their answers, its collected samples) with the CSV export of its runs, the
cancel button, the sample download, and the tasks section of a computer's page (loaded by htmx).

Everything goes through ``tasks.service``, ``tasks.samples`` and ``tasks.quarantine`` with the viewer's scope,
like the REST API, so the services check the scope and write the audit log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Request, Response
from sqlalchemy import ColumnElement, case, select
from sqlalchemy.orm import Session

from garrison.protocol.tasks import QuarantineState, TaskKind
from garrison.server.agents import service as agents
from garrison.server.agents.models import Agent
from garrison.server.console import csvfile, i18n, sorting
from garrison.server.console.i18n import N_
from garrison.server.console.views.units import tree_rows
from garrison.server.console.web import (
    ConsoleDb,
    CurrentViewer,
    Viewer,
    WritingViewer,
    console_router,
    gettext,
    language,
    redirect,
    render,
)
from garrison.server.deps import Settings
from garrison.server.errors import BadRequest, Forbidden, NotFound, ServerError
from garrison.server.policies import service as policies
from garrison.server.tasks import quarantine, samples, service
from garrison.server.tasks.models import QuarantinedFile, RunState, Task, TaskRun
from garrison.server.units import service as units
from garrison.server.units.models import Unit

router = console_router()

PAGE_SIZE = 50
MAX_EXPORT = 100_000
AGENT_TASKS = 10
AGENT_FILES = 20
DEFAULT_HOURS = 72
MAX_HOURS = service.MAX_HOURS
#: The kinds the form offers; restoring and deleting a quarantined file start from the quarantine pages.
FORM_KINDS = (TaskKind.SCAN, TaskKind.UPDATE, TaskKind.COLLECT)
#: The state filter "not run yet": computers that have not started the task (and the ones it expired for).
WAITING = "waiting"
WAITING_STATES = (RunState.QUEUED, RunState.SENT, RunState.EXPIRED)

TASK_KIND_LABELS = {
    "scan": N_("Scan now"),
    "update": N_("Update now"),
    "restore": N_("Restore a file"),
    "delete": N_("Delete a quarantined file"),
    "collect": N_("Collect a file"),
}
RUN_STATE_LABELS = {
    "queued": N_("Waiting to be sent"),
    "sent": N_("Sent, no answer yet"),
    "running": N_("Running"),
    "done": N_("Done"),
    "failed": N_("Failed"),
    "expired": N_("Expired before it ran"),
    "cancelled": N_("Cancelled"),
    WAITING: N_("Not run yet"),
}
QUARANTINE_STATE_LABELS = {
    "quarantined": N_("In quarantine"),
    "restored": N_("Restored"),
    "deleted": N_("Deleted"),
}
# What the agents put in a run's result, in words (other keys are shown as they are).
RESULT_LABELS = {
    "files": N_("files scanned"),
    "scanned": N_("files scanned"),
    "infected": N_("infected"),
    "errors": N_("errors"),
    "path": N_("file"),
    "size": N_("bytes"),
    "sha256": "SHA-256",
    "signature_version": N_("signatures"),
    "engine_version": N_("engine"),
}
# The tasks service's messages and what the console says instead (the general ones are in ``i18n``).


def kind_text(code: str, _: i18n.Gettext) -> str:
    return i18n.label(TASK_KIND_LABELS, code, _)


def run_state_text(code: str, _: i18n.Gettext) -> str:
    return i18n.label(RUN_STATE_LABELS, code, _)


def quarantine_state_text(code: str, _: i18n.Gettext) -> str:
    return i18n.label(QUARANTINE_STATE_LABELS, code, _)


def target_text(target: str, _: i18n.Gettext) -> str:
    """How the service described the targets ("unit: X", "group: Y", "computers: a, b") in the reader's words."""
    how, _sep, names = target.partition(": ")
    if how == "unit":
        return _("Unit %(name)s and the units below it") % {"name": names}
    if how == "group":
        return _("Group %(name)s") % {"name": names}
    if how == "computers":
        return _("Computers: %(names)s") % {"names": names}
    return target


def result_text(result: dict[str, Any], _: i18n.Gettext, number: Callable[[int], str] = str) -> str:
    """A run's result as a short line: ``12,034 files scanned, 0 infected``."""
    parts = []
    for key, raw in result.items():
        value = ", ".join(str(v) for v in raw) if isinstance(raw, list) else raw
        if key in RESULT_LABELS:
            label = _(RESULT_LABELS[key]) if RESULT_LABELS[key] != "SHA-256" else "SHA-256"
            parts.append(f"{number(value)} {label}" if isinstance(value, int) else f"{label}: {value}")
        else:
            parts.append(f"{key}: {value}")
    return ", ".join(parts)


def params_text(task: Task, _: i18n.Gettext) -> str:
    """What the task works on, in words (the quarantined file is shown apart)."""
    if task.kind is TaskKind.SCAN:
        paths = task.params.get("paths") or []
        return "; ".join(paths) if paths else _("The folders of the computer's policy")
    if task.kind is TaskKind.COLLECT and task.params.get("path"):
        return str(task.params["path"])
    return ""


def labels(request: Request) -> dict[str, Any]:
    """The label functions the task and quarantine templates use."""
    _ = gettext(request)
    lang = language(request)
    return {
        "task_kind_label": lambda code: kind_text(code, _),
        "run_state_label": lambda code: run_state_text(code, _),
        "quarantine_state_label": lambda code: quarantine_state_text(code, _),
        "target_label": lambda text: target_text(text, _),
        "result_label": lambda result: result_text(result or {}, _, lambda n: i18n.number(n, lang)),
        "params_label": lambda task: params_text(task, _),
        "is_open": service.is_open,
    }


def _task(session: Session, viewer: Viewer, task_id: int) -> service.TaskSummary:
    try:
        return service.get_task(session, viewer.caller.scope, task_id)
    except NotFound:
        raise NotFound("no such page") from None


def go(request: Request, url: str) -> Response:
    """After a successful button: see the result (htmx, which asked for a confirmation, is told where to go)."""
    if request.headers.get("HX-Request"):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return redirect(url)


# -- the list ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListFilters:
    kind: TaskKind | None = None

    def query_string(self) -> str:
        return urlencode({"kind": self.kind.value}) if self.kind else ""


def _kind(value: str) -> TaskKind | None:
    return TaskKind(value) if value in {k.value for k in TaskKind} else None


#: The sortable columns of the list (``sort``): newest first by default; the kind (in the form's order), the end.
SORTABLE = sorting.Sortable(
    ("created", "kind", "expires"),
    "created",
    default_descending=True,
    descending_first=frozenset({"created", "expires"}),
)
Chosen = Annotated[sorting.Sort, Depends(SORTABLE.chosen)]
_SORT_COLUMNS: dict[str, list[sorting.Orderable]] = {
    "created": [Task.created_at],
    "kind": [case({k: i for i, k in enumerate(TaskKind)}, value=Task.kind, else_=len(TaskKind))],
    "expires": [Task.expires_at],
}


def task_order(sort: sorting.Sort) -> list[ColumnElement[Any]]:
    return sorting.order_by(sort, _SORT_COLUMNS, [Task.id])


@router.get("/tasks")
def list_page(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    chosen: Chosen,
    kind: str = "",
    page: int = 1,
) -> Response:
    filters = ListFilters(_kind(kind))
    order = chosen
    scope = viewer.caller.scope
    page = max(1, page)

    def read(page: int) -> tuple[list[service.TaskSummary], int]:
        offset = (page - 1) * PAGE_SIZE
        return service.list_tasks(
            session, scope, kind=filters.kind, limit=PAGE_SIZE, offset=offset, order=task_order(order)
        )

    shown, total = read(page)
    pages = max(1, -(-total // PAGE_SIZE))
    if page > pages:
        page = pages
        shown, total = read(page)
    context = {
        "tasks": shown,
        "filters": filters,
        "sort": order,
        "kinds": [k.value for k in TaskKind],
        "total": total,
        "page": page,
        "pages": pages,
        "waiting": WAITING,
        **labels(request),
    }
    return render(request, "tasks/list.html", context, viewer=viewer)


@router.get("/tasks.csv")
def export(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    chosen: Chosen,
    kind: str = "",
) -> Response:
    _ = gettext(request)
    order = task_order(chosen)
    found, _total = service.list_tasks(session, viewer.caller.scope, kind=_kind(kind), limit=MAX_EXPORT, order=order)
    header = [_("Task"), _("Computers"), _("Started by"), _("Started"), _("Valid until"), _("Cancelled")]
    header += [_("Done"), _("Failed"), _("Running"), _("Not run yet"), _("Total"), _("Comment"), "ID"]
    rows = [
        [
            kind_text(s.task.kind.value, _),
            target_text(s.task.target, _),
            s.task.created_by_name,
            i18n.moment(s.task.created_at),
            i18n.moment(s.task.expires_at),
            i18n.moment(s.task.cancelled_at) if s.task.cancelled_at else "",
            s.counts.get(RunState.DONE, 0),
            s.counts.get(RunState.FAILED, 0),
            s.counts.get(RunState.RUNNING, 0),
            s.waiting,
            s.total,
            s.task.comment,
            s.task.id,
        ]
        for s in found
    ]
    return csvfile.download("tasks", header, rows)


# -- the form ---------------------------------------------------------------------------------------------------


def _form_page(
    request: Request,
    session: Session,
    viewer: Viewer,
    values: dict[str, str],
    *,
    error: str = "",
    status_code: int = 200,
) -> Response:
    if not viewer.can_write:
        raise Forbidden("read-only access")
    scope = viewer.caller.scope
    groups = policies.list_groups(session, scope)
    unit_rows = tree_rows(units.subtree(session, scope))
    names = {r.unit.id: r.unit.name for r in unit_rows}
    agent = None
    if values.get("agent_id"):
        try:
            agent = agents.get_agent(session, scope, values["agent_id"])
        except NotFound:
            raise NotFound("no such page") from None
    context = {
        "values": values,
        "error": error,
        "kinds": [k.value for k in FORM_KINDS],
        "units": unit_rows,
        "groups": [(g, names.get(g.unit_id, "")) for g in groups],
        "agent": agent,
        "max_hours": MAX_HOURS,
        **labels(request),
    }
    return render(request, "tasks/form.html", context, viewer=viewer, status_code=status_code)


@router.get("/tasks/new")
def new_task(
    request: Request, session: ConsoleDb, viewer: CurrentViewer, agent: str = "", kind: str = "", unit: str = ""
) -> Response:
    values = {
        "kind": kind if kind in {k.value for k in FORM_KINDS} else TaskKind.SCAN.value,
        "target": "agent" if agent else "unit",
        "unit_id": unit if unit.isdigit() else "",
        "group_id": "",
        "agent_id": agent[:36],
        "paths": "",
        "path": "",
        "hours": str(DEFAULT_HOURS),
        "comment": "",
    }
    return _form_page(request, session, viewer, values)


@router.post("/tasks/new")
def create_task(
    request: Request,
    session: ConsoleDb,
    viewer: WritingViewer,
    kind: Annotated[str, Form(max_length=16)] = "",
    target: Annotated[str, Form(max_length=16)] = "",
    unit_id: Annotated[str, Form(max_length=16)] = "",
    group_id: Annotated[str, Form(max_length=16)] = "",
    agent_id: Annotated[str, Form(max_length=36)] = "",
    paths: Annotated[str, Form(max_length=300_000)] = "",
    path: Annotated[str, Form(max_length=4096)] = "",
    hours: Annotated[str, Form(max_length=16)] = str(DEFAULT_HOURS),
    comment: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    _ = gettext(request)
    values = {
        "kind": kind,
        "target": target,
        "unit_id": unit_id,
        "group_id": group_id,
        "agent_id": agent_id.strip(),
        "paths": paths,
        "path": path.strip(),
        "hours": hours.strip(),
        "comment": comment.strip(),
    }
    if not viewer.can_write:
        raise Forbidden("read-only access")
    error = ""
    chosen = service.Target()
    if kind not in {k.value for k in FORM_KINDS}:
        error = _("Choose what the computers should do.")
    elif target == "unit" and unit_id.isdigit():
        chosen = service.Target(unit_id=int(unit_id))
    elif target == "group" and group_id.isdigit():
        chosen = service.Target(group_id=int(group_id))
    elif target == "agent" and values["agent_id"]:
        chosen = service.Target(agent_ids=(values["agent_id"],))
    else:
        error = _("Choose the computers: a unit, a group or one computer.")
    if not error and (not values["hours"].isdigit() or not 1 <= int(values["hours"]) <= MAX_HOURS):
        error = _("The waiting time must be a whole number of hours from 1 to %(hours)s.") % {"hours": MAX_HOURS}
    if error:
        return _form_page(request, session, viewer, values, error=error, status_code=400)
    params: dict[str, Any] = {}
    if kind == TaskKind.SCAN.value:
        params = {"paths": [line.strip() for line in paths.splitlines() if line.strip()]}
    elif kind == TaskKind.COLLECT.value:
        params = {"path": values["path"]}
    try:
        task = service.create_task(
            session,
            viewer.caller.scope,
            viewer.caller.actor,
            TaskKind(kind),
            params,
            chosen,
            hours=int(values["hours"]),
            comment=values["comment"],
        )
    except ServerError as refused:
        session.rollback()
        return _form_page(
            request, session, viewer, values, error=i18n.explain_error(refused, _), status_code=refused.status
        )
    return redirect(f"/tasks/{task.id}?done=created")


# -- one task ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunFilters:
    state: str = ""

    def query_string(self) -> str:
        return urlencode({"state": self.state}) if self.state else ""

    def states(self) -> tuple[str, ...]:
        if self.state == WAITING:
            return WAITING_STATES
        return (self.state,) if self.state else ()


def _run_filters(state: str) -> RunFilters:
    return RunFilters(state if state in RunState.ALL or state == WAITING else "")


def unit_names(session: Session, unit_ids: Iterable[int]) -> dict[int, str]:
    ids = set(unit_ids)
    return {i: n for i, n in session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(ids)))} if ids else {}


def quarantined_of(session: Session, viewer: Viewer, task: Task) -> QuarantinedFile | None:
    """The quarantined file a restore, delete or collect task is about (if it is one)."""
    item_id = task.params.get("quarantine_id")
    if not item_id:
        return None
    query = units.within(select(QuarantinedFile), viewer.caller.scope, QuarantinedFile.unit_id)
    found: QuarantinedFile | None = session.scalars(query.where(QuarantinedFile.item_id == item_id)).first()
    return found


@router.get("/tasks/{task_id}")
def detail(
    request: Request,
    task_id: int,
    session: ConsoleDb,
    viewer: CurrentViewer,
    state: str = "",
    page: int = 1,
    done: str = "",
) -> Response:
    _ = gettext(request)
    summary = _task(session, viewer, task_id)
    filters = _run_filters(state)
    scope = viewer.caller.scope
    page = max(1, page)
    shown, total = service.runs(
        session, scope, task_id, states=filters.states(), limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    pages = max(1, -(-total // PAGE_SIZE))
    if page > pages:
        page = pages
        shown, total = service.runs(
            session, scope, task_id, states=filters.states(), limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
    notices = {
        "created": _("The task was created. Each computer receives it the next time it contacts the server."),
        "cancelled": _("The task was cancelled: computers that have not received it yet will not run it."),
    }
    task = summary.task
    found_samples = samples.of_task(session, scope, task.id) if task.kind is TaskKind.COLLECT else []
    hosts = {sample.agent_id for sample in found_samples}
    context = {
        "s": summary,
        "task": task,
        "runs": shown,
        "unit_names": unit_names(session, (agent.unit_id for _run, agent in shown)),
        "filters": filters,
        "total": total,
        "page": page,
        "pages": pages,
        "states": RunState.ALL,
        "waiting": WAITING,
        "cancellable": task.cancelled_at is None
        and (summary.counts.get(RunState.QUEUED, 0) + summary.counts.get(RunState.SENT, 0)) > 0,
        "samples": found_samples,
        "sample_hosts": {i: h for i, h in session.execute(select(Agent.id, Agent.hostname).where(Agent.id.in_(hosts)))},
        "archive_password": samples.ARCHIVE_PASSWORD,
        "item": quarantined_of(session, viewer, task),
        "notice": notices.get(done, ""),
        **labels(request),
    }
    return render(request, "tasks/detail.html", context, viewer=viewer)


@router.get("/tasks/{task_id}/runs.csv")
def export_runs(request: Request, task_id: int, session: ConsoleDb, viewer: CurrentViewer, state: str = "") -> Response:
    _ = gettext(request)
    _task(session, viewer, task_id)
    filters = _run_filters(state)
    found, _total = service.runs(session, viewer.caller.scope, task_id, states=filters.states(), limit=MAX_EXPORT)
    names = unit_names(session, (agent.unit_id for _run, agent in found))
    header = [_("Computer"), _("Unit"), _("State"), _("Sent"), _("Last update"), _("Message"), _("Result"), "ID"]
    rows = [
        [
            agent.hostname,
            names.get(agent.unit_id, ""),
            run_state_text(run.state, _),
            i18n.moment(run.sent_at) if run.sent_at else "",
            i18n.moment(run.updated_at) if run.updated_at else "",
            run.message,
            result_text(run.result or {}, _, lambda n: i18n.number(n, language(request))),
            agent.id,
        ]
        for run, agent in found
    ]
    return csvfile.download(f"task-{task_id}", header, rows)


@router.post("/tasks/{task_id}/cancel")
def cancel(request: Request, task_id: int, session: ConsoleDb, viewer: WritingViewer) -> Response:
    if not viewer.can_write:
        raise Forbidden("read-only access")
    _task(session, viewer, task_id)
    try:
        service.cancel(session, viewer.caller.scope, viewer.caller.actor, task_id)
    except ServerError as refused:
        raise BadRequest(i18n.explain_error(refused, gettext(request))) from None
    return go(request, f"/tasks/{task_id}?done=cancelled")


@router.get("/samples/{sample_id}/download")
def download_sample(
    request: Request, sample_id: int, session: ConsoleDb, viewer: CurrentViewer, settings: Settings
) -> Response:
    store = samples.SampleStore(settings.data_dir)
    try:
        name, data = samples.packed(session, viewer.caller.scope, viewer.caller.actor, store, sample_id)
    except NotFound:
        raise NotFound("no such page") from None
    return Response(
        data,
        media_type="application/x-7z-compressed",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


# -- a computer's tasks ----------------------------------------------------------------------------------------


@router.get("/agents/{agent_id}/tasks-section")
def agent_section(request: Request, agent_id: str, session: ConsoleDb, viewer: CurrentViewer) -> Response:
    scope = viewer.caller.scope
    agent: Agent = agents.get_agent(session, scope, agent_id)
    files, file_count = quarantine.search(
        session, scope, state=QuarantineState.QUARANTINED, agent_id=agent.id, limit=AGENT_FILES
    )
    runs: list[tuple[TaskRun, Task]] = service.agent_runs(session, scope, agent.id, limit=AGENT_TASKS)
    context = {
        "agent": agent,
        "runs": runs,
        "files": [item for item, _agent in files],
        "file_count": file_count,
        "default_hours": DEFAULT_HOURS,
        **labels(request),
    }
    # htmx loads the section into the computer's page; the plain link (no script) opens it as a page of its own.
    template = "tasks/agent_section.html" if request.headers.get("HX-Request") else "tasks/agent_page.html"
    return render(request, template, context, viewer=viewer)
