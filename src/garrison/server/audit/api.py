"""REST endpoint of the audit log (read-only, scoped)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from garrison.server.audit import service
from garrison.server.audit.schemas import AuditEventOut
from garrison.server.deps import CurrentCaller, DbSession
from garrison.server.errors import ERROR_RESPONSES
from garrison.server.wire import ID_MAX

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=ERROR_RESPONSES)


@router.get("", response_model=list[AuditEventOut])
def list_events(
    session: DbSession,
    caller: CurrentCaller,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=ID_MAX),
) -> list[AuditEventOut]:
    return [AuditEventOut.model_validate(e) for e in service.events(session, caller.scope, limit=limit, offset=offset)]
