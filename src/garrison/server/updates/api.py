"""REST endpoints of the update channel: the TUF repository agents read, and releases, rollout and agent
software for admins."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from garrison.server.agents.api import CurrentAgent
from garrison.server.deps import AdminCaller, CurrentCaller, DbSession, Settings
from garrison.server.errors import ERROR_RESPONSES, BadRequest
from garrison.server.updates import releases, rollout, service
from garrison.server.updates.models import AgentRelease, Release, Stage
from garrison.server.updates.repository import UpdateRepository
from garrison.server.wire import Id, PathId

agent_router = APIRouter(prefix="/api/v1/updates", tags=["agent protocol"], responses=ERROR_RESPONSES)
router = APIRouter(prefix="/api/v1", tags=["updates"], responses=ERROR_RESPONSES)

#: The largest agent wheel accepted.
MAX_WHEEL_BYTES = 64 * 1024 * 1024


def get_repository(request: Request) -> UpdateRepository:
    repo: UpdateRepository = request.app.state.update_repository
    return repo


Repo = Annotated[UpdateRepository, Depends(get_repository)]


# -- the repository, for agents -------------------------------------------------------------------------------


@agent_router.get("/metadata/{name}", response_class=Response)
def metadata(name: str, _agent: CurrentAgent, session: DbSession, repo: Repo) -> Response:
    """Signed TUF metadata: ``timestamp.json`` or ``<version>.<role>.json``."""
    return Response(repo.metadata_file(session, name), media_type="application/json", headers=_no_store())


@agent_router.get("/targets/{path:path}", response_class=FileResponse)
def target(path: str, _agent: CurrentAgent, session: DbSession, repo: Repo) -> FileResponse:
    """A target file by its hash-prefixed name (``signatures/<sha256>.12.tar.gz``)."""
    stored, _row = repo.target_file(session, path)
    # Hash-named, so a cache may keep it for ever.
    return FileResponse(stored, media_type="application/octet-stream", headers={"Cache-Control": "max-age=31536000"})


def _no_store() -> dict[str, str]:
    return {"Cache-Control": "no-store"}


# -- releases, for people -------------------------------------------------------------------------------------


class ReleaseOut(BaseModel):
    number: int
    created_at: datetime
    reason: str
    stage: Stage
    available_at: datetime | None
    signatures: int
    content_sha256: str
    content_size: int
    compressed_size: int
    files: list[dict[str, object]]
    sources: list[dict[str, object]]
    restores: int | None
    hold_reason: str

    model_config = {"from_attributes": True}


class PublishIn(BaseModel):
    reason: str = Field(default="published by an admin", min_length=1, max_length=500)


class RolloutIn(BaseModel):
    canary_group_id: Id | None = None
    canary_hours: float = Field(default=24.0, ge=0, le=720)
    auto_promote: bool = True


class RolloutOut(RolloutIn):
    pass


class NoticeOut(BaseModel):
    code: str
    message: str
    due: datetime | None


class StatusOut(BaseModel):
    latest_release: int | None
    general_release: int | None
    expires: dict[str, datetime]
    notices: list[NoticeOut]
    outdated_7_days: int
    outdated_15_days: int


class AgentReleaseOut(BaseModel):
    version: str
    size: int
    created_at: datetime
    stage: Stage
    available_at: datetime | None
    notes: str

    model_config = {"from_attributes": True}


@router.get("/releases", response_model=list[ReleaseOut])
def list_releases(session: DbSession, _caller: CurrentCaller, limit: int = 50, offset: int = 0) -> list[Release]:
    return releases.listing(session, min(max(limit, 1), 200), max(offset, 0))


@router.get("/releases/{number}", response_model=ReleaseOut)
def get_release(number: PathId, session: DbSession, _caller: CurrentCaller) -> Release:
    return releases.get(session, number)


@router.post("/releases", response_model=ReleaseOut | None)
def publish_release(
    body: PublishIn, session: DbSession, caller: AdminCaller, repo: Repo, settings: Settings
) -> Release | None:
    """Publish the sources' current content now (None when nothing changed since the latest release)."""
    return service.publish_from_sources(session, repo, settings, caller.actor, body.reason)


@router.post("/releases/{number}/promote", response_model=ReleaseOut)
def promote_release(number: PathId, session: DbSession, caller: AdminCaller) -> Release:
    return rollout.promote(session, caller.actor, number)


@router.post("/releases/{number}/pull", response_model=ReleaseOut)
def pull_release(number: PathId, session: DbSession, caller: AdminCaller, repo: Repo) -> Release:
    """Take a release back: publishes a new release with the content of the newest good one before it."""
    return rollout.pull_back(session, repo, caller.actor, number)


@router.get("/rollout", response_model=RolloutOut)
def get_rollout(session: DbSession, _caller: CurrentCaller) -> RolloutOut:
    row = releases.rollout_settings(session)
    return RolloutOut(canary_group_id=row.canary_group_id, canary_hours=row.canary_hours, auto_promote=row.auto_promote)


@router.put("/rollout", response_model=RolloutOut)
def set_rollout(body: RolloutIn, session: DbSession, caller: AdminCaller) -> RolloutOut:
    rollout.configure(
        session,
        caller.actor,
        canary_group_id=body.canary_group_id,
        canary_hours=body.canary_hours,
        auto_promote=body.auto_promote,
    )
    return RolloutOut(**body.model_dump())


@router.get("/updates/status", response_model=StatusOut)
def update_status(session: DbSession, caller: CurrentCaller, repo: Repo) -> StatusOut:
    offer = rollout.current_offer(session)
    counts = service.outdated_counts(session, caller.scope)
    return StatusOut(
        latest_release=offer.newest,
        general_release=offer.general,
        expires=repo.expiries(session),
        notices=[NoticeOut(code=n.code, message=n.message, due=n.due) for n in service.notices(session, repo)],
        outdated_7_days=counts[7],
        outdated_15_days=counts[15],
    )


# -- agent software -------------------------------------------------------------------------------------------


@router.get("/agent-releases", response_model=list[AgentReleaseOut])
def list_agent_releases(session: DbSession, _caller: CurrentCaller) -> list[AgentRelease]:
    return rollout.agent_releases(session)


@router.post("/agent-releases", response_model=AgentReleaseOut, status_code=201)
def add_agent_release(
    version: Annotated[str, Form(max_length=64)],
    file: Annotated[UploadFile, File()],
    session: DbSession,
    caller: AdminCaller,
    repo: Repo,
    notes: Annotated[str, Form(max_length=2000)] = "",
) -> AgentRelease:
    """Offer an agent wheel (``garrison-<version>-py3-none-any.whl``) through the repository."""
    wheel = file.file.read(MAX_WHEEL_BYTES + 1)
    if len(wheel) > MAX_WHEEL_BYTES:
        raise BadRequest(f"an agent wheel may be at most {MAX_WHEEL_BYTES // (1024 * 1024)} MiB")
    return rollout.add_agent_release(session, repo, caller.actor, version, wheel, notes=notes)


@router.post("/agent-releases/{version}/promote", response_model=AgentReleaseOut)
def promote_agent_release(version: str, session: DbSession, caller: AdminCaller) -> AgentRelease:
    return rollout.set_agent_stage(session, caller.actor, version, Stage.GENERAL)


@router.post("/agent-releases/{version}/pull", response_model=AgentReleaseOut)
def pull_agent_release(version: str, session: DbSession, caller: AdminCaller) -> AgentRelease:
    return rollout.set_agent_stage(session, caller.actor, version, Stage.PULLED)
