"""REST endpoints of the national outbox: the AVReports queued for the national authority, their attempts and the
receiver's answers; queueing one now and sending a failed one again.

The national report covers the whole tree (it is the province's), so the outbox is for the province's
administrators (whole tree) only, as the export is: everyone else gets 403.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from garrison.server.audit.service import record
from garrison.server.db import utcnow
from garrison.server.deps import AdminCaller, DbSession, Settings
from garrison.server.errors import ERROR_RESPONSES
from garrison.server.reports import statistics
from garrison.server.sharing import outbox
from garrison.server.sharing.models import DeliveryStatus, NationalAttempt, NationalDelivery
from garrison.server.wire import PathId

router = APIRouter(prefix="/api/v1/sharing/outbox", tags=["sharing"], responses=ERROR_RESPONSES)


class AttemptOut(BaseModel):
    number: int
    started_at: datetime
    duration_ms: int
    http_status: int | None
    answer: str = Field(description="the receiver's answer, at most 4,096 characters")
    error: str
    outcome: str = Field(description="delivered, retry, failed, or lost (the sending process stopped)")


class DeliveryOut(BaseModel):
    id: int
    message_id: str = Field(description="the edXML DocumentId, sent as the Idempotency-Key header")
    period_start: datetime
    period_end: datetime
    status: DeliveryStatus
    automatic: bool
    machines: int
    infected: int
    document_sha256: str
    document_bytes: int
    created_at: datetime
    created_by: str
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str
    attempt_list: list[AttemptOut]


class OutboxOut(BaseModel):
    endpoint_configured: bool
    endpoint: str
    send_hours: float
    total: int
    items: list[DeliveryOut]


class QueueIn(BaseModel):
    start: datetime | None = Field(default=None, description="first moment covered (default: the quarter's start)")
    end: datetime | None = Field(default=None, description="first moment not covered (default: now)")


def _attempt(row: NationalAttempt) -> AttemptOut:
    return AttemptOut(
        number=row.number,
        started_at=outbox.as_utc(row.started_at),
        duration_ms=row.duration_ms,
        http_status=row.http_status,
        answer=row.answer,
        error=row.error,
        outcome=row.outcome,
    )


def delivery_out(item: NationalDelivery) -> DeliveryOut:
    def when(moment: datetime | None) -> datetime | None:
        return outbox.as_utc(moment) if moment else None

    return DeliveryOut(
        id=item.id,
        message_id=item.message_id,
        period_start=outbox.as_utc(item.period_start),
        period_end=outbox.as_utc(item.period_end),
        status=item.status,
        automatic=item.automatic,
        machines=item.machines,
        infected=item.infected,
        document_sha256=item.document_sha256,
        document_bytes=len(item.document),
        created_at=outbox.as_utc(item.created_at),
        created_by=item.created_by_name,
        attempts=item.attempts,
        next_attempt_at=when(item.next_attempt_at),
        delivered_at=when(item.delivered_at),
        last_error=item.last_error,
        attempt_list=[_attempt(a) for a in item.attempt_rows],
    )


@router.get("", response_model=OutboxOut)
def list_outbox(
    session: DbSession,
    _caller: AdminCaller,
    settings: Settings,
    status: Annotated[DeliveryStatus | None, Query(description="only reports in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> OutboxOut:
    """The AVReports queued for the national authority, newest first, with every attempt and answer."""
    found = outbox.items(session, status=status, limit=limit, offset=offset)
    return OutboxOut(
        endpoint_configured=outbox.configured(settings),
        endpoint=settings.national_endpoint_url,
        send_hours=settings.national_send_hours,
        total=outbox.count(session, status),
        items=[delivery_out(item) for item in found],
    )


@router.post("", response_model=DeliveryOut, status_code=201, responses={409: {"description": "not configured"}})
def queue_now(session: DbSession, caller: AdminCaller, settings: Settings, body: QueueIn) -> DeliveryOut:
    """Make, sign and queue the AVReport of the whole tree for [start, end) (default: from the quarter's start to
    now); it is sent at the outbox's next pass. Province administrators only; audited. 409 until the endpoint,
    the organisation codes and the signing key are configured."""
    now = utcnow()
    start = body.start or statistics.quarter_bounds(*statistics.current_quarter(now))[0]
    end = body.end or now
    item = outbox.queue(session, settings, caller.actor, start=start, end=end, now=now)
    return delivery_out(outbox.get(session, item.id))


@router.get("/{delivery_id}", response_model=DeliveryOut)
def get_delivery(session: DbSession, _caller: AdminCaller, delivery_id: PathId) -> DeliveryOut:
    """One report in the outbox, with every attempt and the receiver's answers."""
    return delivery_out(outbox.get(session, delivery_id))


@router.post("/{delivery_id}/retry", response_model=DeliveryOut)
def retry_delivery(session: DbSession, caller: AdminCaller, delivery_id: PathId) -> DeliveryOut:
    """Send a failed (or waiting) report again at the next pass, with a fresh count of attempts; the document and
    its message id stay the same. Province administrators only; audited."""
    item = outbox.retry(session, caller.actor, delivery_id)
    return delivery_out(outbox.get(session, item.id))


@router.get(
    "/{delivery_id}/document",
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}, "description": "the signed document, as sent"}},
)
def get_document(session: DbSession, caller: AdminCaller, delivery_id: PathId) -> Response:
    """The signed document exactly as it is sent. Province administrators only (it names computers); audited."""
    item = outbox.get(session, delivery_id)
    record(session, caller.actor, "sharing.outbox_document", "national_delivery", item.id, message_id=item.message_id)
    return Response(
        item.document,
        media_type="application/xml",
        headers={
            "Content-Disposition": f'attachment; filename="garrison-avreport-{item.message_id}.xml"',
            "Cache-Control": "no-store",
        },
    )
