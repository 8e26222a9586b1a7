"""REST endpoints of federation.

What a child server calls on its parent: ``POST /api/v1/federation/join`` (the one-time token and the child's
public key) and ``POST /api/v1/federation/push`` (signed: ``X-Garrison-Child`` and ``X-Garrison-Signature``).
What administrators of the whole tree call: the children registered here, their figures and the totals across
them, registering, new join tokens and revoking; and, on a child, its link to the parent and "push now".
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from garrison.server import tls
from garrison.server.audit.service import record
from garrison.server.db import Database
from garrison.server.deps import AdminCaller, DbSession, Settings, client_address
from garrison.server.errors import ERROR_RESPONSES, BadRequest, ErrorOut, ServerError
from garrison.server.federation import child as link_files
from garrison.server.federation import parent, signing
from garrison.server.federation.models import FederationChild
from garrison.server.federation.schemas import (
    ChildFigures,
    ChildIn,
    ChildOut,
    JoinIn,
    JoinOut,
    LinkOut,
    NewChild,
    PushOut,
    Totals,
)
from garrison.server.reports import statistics
from garrison.server.settings import ServerSettings
from garrison.server.wire import PathId

router = APIRouter(prefix="/api/v1/federation", tags=["federation"], responses=ERROR_RESPONSES)


class PayloadTooLarge(ServerError):
    status = 413
    code = "too_large"


async def push_body(request: Request) -> bytes:
    """The raw body of a push, read up to ``federation_max_push_bytes`` (413 past it, before anything else)."""
    settings: ServerSettings = request.app.state.settings
    limit = settings.federation_max_push_bytes
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"a push is at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"a push is at most {limit} bytes")
    return bytes(body)


@router.post("/join", response_model=JoinOut, status_code=201)
def join(body: JoinIn, request: Request, session: DbSession) -> JoinOut:
    """A child server trades its one-time join token for its registration (its public key is kept)."""
    return parent.join(session, body, client_address(request))


@router.post(
    "/push", response_model=PushOut, responses={413: {"model": ErrorOut, "description": "the body is too large"}}
)
def push(body: Annotated[bytes, Depends(push_body)], request: Request, session: DbSession) -> PushOut:
    """A child server's signed figures and submitted reports; the answer lists the reports now held here."""
    return parent.receive_push(
        session,
        request.headers.get(signing.CHILD_HEADER, ""),
        request.headers.get(signing.SIGNATURE_HEADER, ""),
        body,
        client_address(request),
    )


def _quarter(year: int | None, quarter: int | None) -> tuple[int, int]:
    if year is None and quarter is None:
        return statistics.current_quarter()
    if year is None or quarter is None:
        raise BadRequest("give both year and quarter, or neither (the current quarter)")
    return year, quarter


Year = Annotated[int | None, Query(ge=2000, le=2100)]
QuarterNumber = Annotated[int | None, Query(ge=1, le=4)]


@router.get("/children", response_model=list[ChildOut])
def list_children(
    session: DbSession, caller: AdminCaller, settings: Settings, year: Year = None, quarter: QuarterNumber = None
) -> list[ChildOut]:
    y, q = _quarter(year, quarter)
    return [parent.child_out(session, c, y, q, settings.federation_push_seconds) for c in parent.children(session)]


@router.get("/totals", response_model=Totals)
def totals(
    session: DbSession, caller: AdminCaller, settings: Settings, year: Year = None, quarter: QuarterNumber = None
) -> Totals:
    """The quarter's figures summed over the children (not revoked) that sent them."""
    y, q = _quarter(year, quarter)
    listed = [parent.child_out(session, c, y, q, settings.federation_push_seconds) for c in parent.children(session)]
    return parent.totals(listed, y, q)


@router.post("/children", response_model=NewChild, status_code=201)
def register_child(
    body: ChildIn, request: Request, session: DbSession, caller: AdminCaller, settings: Settings
) -> NewChild:
    """Register a child server for a unit of this tree; the join token is in this answer only."""
    child, token = parent.register(session, caller.scope, caller.actor, body.name, body.unit_id, body.days)
    return _new_child(session, request, settings, child, token)


@router.get("/children/{child_id}", response_model=ChildFigures)
def get_child(child_id: PathId, session: DbSession, caller: AdminCaller, settings: Settings) -> ChildFigures:
    """A child and the figures it last sent, every quarter as sent (``Statistics`` JSON)."""
    child = parent.get(session, child_id)
    y, q = statistics.current_quarter()
    return ChildFigures(
        child=parent.child_out(session, child, y, q, settings.federation_push_seconds),
        quarters=list(child.aggregates or []),
    )


@router.post("/children/{child_id}/token", response_model=NewChild)
def new_token(
    child_id: PathId,
    request: Request,
    session: DbSession,
    caller: AdminCaller,
    settings: Settings,
    days: Annotated[float, Query(gt=0, le=30)] = 7,
) -> NewChild:
    """A new one-time join token for a child that must join again (its next join replaces its key)."""
    child, token = parent.new_join_token(session, caller.scope, caller.actor, child_id, days)
    return _new_child(session, request, settings, child, token)


@router.post("/children/{child_id}/revoke", response_model=ChildOut)
def revoke_child(child_id: PathId, session: DbSession, caller: AdminCaller, settings: Settings) -> ChildOut:
    child = parent.revoke(session, caller.scope, caller.actor, child_id)
    y, q = statistics.current_quarter()
    return parent.child_out(session, child, y, q, settings.federation_push_seconds)


def join_command(parent_url: str, token: str, fingerprint: str | None) -> str:
    pin = f" --fingerprint {fingerprint}" if fingerprint else " --fingerprint <SHA256>"
    return f"garrison server federation join {parent_url} {token}{pin}"


def _new_child(
    session: DbSession, request: Request, settings: ServerSettings, child: FederationChild, token: str
) -> NewChild:
    y, q = statistics.current_quarter()
    out = parent.child_out(session, child, y, q, settings.federation_push_seconds)
    fingerprint = tls.data_dir_fingerprint(settings.data_dir) if request.url.scheme == "https" else None
    command = join_command(str(request.base_url).rstrip("/"), token, fingerprint)
    return NewChild(**out.model_dump(), token=token, command=command)


# -- this server as a child -----------------------------------------------------------------------------------


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def link_out(settings: ServerSettings) -> LinkOut:
    link = link_files.link_of(settings.data_dir)
    if link is None:
        return LinkOut(joined=False)
    status = link_files.status_of(settings.data_dir)
    return LinkOut(
        joined=True,
        parent_url=link.parent_url,
        parent_name=link.parent_name,
        child_id=link.child_id,
        name=link.name,
        unit_name=link.unit_name,
        fingerprint=link.fingerprint,
        joined_at=_moment(link.joined_at),
        last_push_at=_moment(status.last_push_at),
        last_error=status.last_error,
        last_error_at=_moment(status.last_error_at),
    )


@router.get("/link", response_model=LinkOut)
def get_link(caller: AdminCaller, settings: Settings) -> LinkOut:
    """Whether this server reports to a parent, and how its last push went."""
    try:
        return link_out(settings)
    except link_files.FederationError as exc:
        raise BadRequest(str(exc)) from None


@router.post("/link/push", response_model=LinkOut)
def push_now(request: Request, session: DbSession, caller: AdminCaller, settings: Settings) -> LinkOut:
    """Push to the parent now (as the background loop does every ``federation_push_seconds``)."""
    record(session, caller.actor, "federation.push", "federation_link")
    # Committed before the push opens sessions of its own (on SQLite this request's transaction holds the lock).
    session.commit()
    database: Database = request.app.state.database
    with contextlib.suppress(link_files.FederationError):  # recorded in the status, which the answer shows
        link_files.push(database, settings)
    return link_out(settings)
