"""REST endpoints of tasks, quarantined files and collected samples; and the agent's sample upload."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from garrison.protocol.tasks import QuarantineState, TaskKind
from garrison.server.agents.api import current_agent
from garrison.server.db import Database
from garrison.server.deps import CurrentCaller, DbSession, Settings
from garrison.server.errors import ERROR_RESPONSES, BadRequest
from garrison.server.tasks import quarantine, samples, service
from garrison.server.tasks.models import RunState
from garrison.server.tasks.schemas import QuarantinedOut, RunOut, SampleOut, TaskIn, TaskOut
from garrison.server.wire import ID_MAX, PathId

router = APIRouter(prefix="/api/v1", tags=["tasks"], responses=ERROR_RESPONSES)
agent_router = APIRouter(prefix="/api/v1/agent", tags=["agent protocol"], responses=ERROR_RESPONSES)


def task_out(summary: service.TaskSummary) -> TaskOut:
    task = summary.task
    return TaskOut(
        id=task.id,
        kind=task.kind,
        params=task.params,
        comment=task.comment,
        unit_id=task.unit_id,
        target=task.target,
        created_by=task.created_by_name,
        created_at=task.created_at,
        expires_at=task.expires_at,
        cancelled_at=task.cancelled_at,
        counts=summary.counts,
        total=summary.total,
        waiting=summary.waiting,
    )


@router.post("/tasks", response_model=TaskOut, status_code=201)
def create_task(body: TaskIn, session: DbSession, caller: CurrentCaller) -> TaskOut:
    target = service.Target(unit_id=body.unit_id, group_id=body.group_id, agent_ids=tuple(body.agent_ids))
    task = service.create_task(
        session, caller.scope, caller.actor, body.kind, body.params, target, hours=body.hours, comment=body.comment
    )
    return task_out(service.get_task(session, caller.scope, task.id))


@router.get("/tasks", response_model=list[TaskOut])
def list_tasks(
    session: DbSession,
    caller: CurrentCaller,
    kind: TaskKind | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=ID_MAX),
) -> list[TaskOut]:
    found, _total = service.list_tasks(session, caller.scope, kind=kind, limit=limit, offset=offset)
    return [task_out(s) for s in found]


@router.get("/tasks/{task_id}", response_model=TaskOut)
def get_task(task_id: PathId, session: DbSession, caller: CurrentCaller) -> TaskOut:
    return task_out(service.get_task(session, caller.scope, task_id))


@router.get("/tasks/{task_id}/runs", response_model=list[RunOut])
def task_runs(
    task_id: PathId,
    session: DbSession,
    caller: CurrentCaller,
    state: Annotated[
        list[str] | None, Query(description="queued, sent, running, done, failed, expired, cancelled")
    ] = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=ID_MAX),
) -> list[RunOut]:
    state = state or []
    unknown = set(state) - set(RunState.ALL)
    if unknown:
        raise BadRequest(f"unknown state: {', '.join(sorted(unknown))}")
    found, _total = service.runs(session, caller.scope, task_id, states=state, limit=limit, offset=offset)
    return [
        RunOut(
            agent_id=agent.id,
            hostname=agent.hostname,
            state=run.state,
            sent_at=run.sent_at,
            updated_at=run.updated_at,
            message=run.message,
            result=run.result,
        )
        for run, agent in found
    ]


@router.post("/tasks/{task_id}/cancel", response_model=TaskOut)
def cancel_task(task_id: PathId, session: DbSession, caller: CurrentCaller) -> TaskOut:
    service.cancel(session, caller.scope, caller.actor, task_id)
    return task_out(service.get_task(session, caller.scope, task_id))


@router.get("/tasks/{task_id}/samples", response_model=list[SampleOut])
def task_samples(task_id: PathId, session: DbSession, caller: CurrentCaller) -> list[SampleOut]:
    service.get_task(session, caller.scope, task_id)
    return [SampleOut.model_validate(s) for s in samples.of_task(session, caller.scope, task_id)]


@router.get(
    "/samples/{sample_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/x-7z-compressed": {}}, "description": "7-Zip, password 'infected'"}},
)
def download_sample(sample_id: PathId, session: DbSession, caller: CurrentCaller, settings: Settings) -> Response:
    name, data = samples.packed(session, caller.scope, caller.actor, samples.SampleStore(settings.data_dir), sample_id)
    return Response(
        data,
        media_type="application/x-7z-compressed",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/quarantine", response_model=list[QuarantinedOut])
def list_quarantine(
    session: DbSession,
    caller: CurrentCaller,
    state: QuarantineState | None = None,
    agent_id: str | None = Query(default=None, max_length=36),
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=ID_MAX),
) -> list[QuarantinedOut]:
    found, _total = quarantine.search(session, caller.scope, state=state, agent_id=agent_id, limit=limit, offset=offset)
    return [QuarantinedOut.model_validate(item) for item, _agent in found]


@agent_router.put(
    "/tasks/{task_id}/sample",
    response_model=SampleOut,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
)
async def upload_sample(
    task_id: PathId,
    request: Request,
    path: str = Query(min_length=1, max_length=4096),
    sha256: str = Query(pattern=r"^[0-9a-fA-F]{64}$"),
) -> SampleOut:
    """The file a collect task asked for, as the request body (at most ``GARRISON_SAMPLE_MAX_BYTES``)."""
    settings = request.app.state.settings
    limit = settings.sample_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"the file is larger than the {limit} bytes a sample may have")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"the file is larger than the {limit} bytes a sample may have")
        chunks.append(chunk)
    data = b"".join(chunks)
    database: Database = request.app.state.database

    def store() -> SampleOut:
        with database.session() as session:
            agent = current_agent(request, session)
            sample = samples.receive(
                session, samples.SampleStore(settings.data_dir), agent, task_id, path, sha256, data, limit
            )
            return SampleOut.model_validate(sample)

    return await run_in_threadpool(store)
