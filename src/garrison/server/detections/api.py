"""REST endpoints of detections (ingestion is on the agent protocol router)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from garrison.server.deps import CurrentCaller, DbSession
from garrison.server.detections import service
from garrison.server.detections.models import Triage
from garrison.server.detections.schemas import DetectionOut, TriageIn
from garrison.server.errors import ERROR_RESPONSES
from garrison.server.wire import ID_MAX

router = APIRouter(prefix="/api/v1/detections", tags=["detections"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[DetectionOut])
def list_detections(
    session: DbSession,
    caller: CurrentCaller,
    triage: Triage | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=ID_MAX),
) -> list[DetectionOut]:
    found = service.list_detections(session, caller.scope, triage=triage, limit=limit, offset=offset)
    return [DetectionOut.model_validate(d) for d in found]


@router.get("/{detection_id}", response_model=DetectionOut)
def get_detection(detection_id: str, session: DbSession, caller: CurrentCaller) -> DetectionOut:
    return DetectionOut.model_validate(service.get(session, caller.scope, detection_id))


@router.patch("/{detection_id}", response_model=DetectionOut)
def triage(detection_id: str, body: TriageIn, session: DbSession, caller: CurrentCaller) -> DetectionOut:
    return DetectionOut.model_validate(
        service.set_triage(session, caller.scope, caller.actor, detection_id, body.triage)
    )
