"""The parent's side: children registered by an administrator, their one-time join tokens, and their pushes.

A push is accepted only when, in this order: the child exists, is not revoked and has joined; the signature over
the exact body verifies with the child's public key; the body is a push of a known format naming the same child;
its sequence number is higher than the last accepted one (no replay); and the child's clock is within
:data:`MAX_CLOCK_SKEW` of ours (an old push captured and sent later is refused even if never seen). The size
limit is enforced before any of this, while the body is read (``api.py``).

The child's figures are kept as it sent them (per quarter); its submitted reports become :class:`ReportSubmission`
rows of the child's unit here (``received_from`` = the child's name), once each: the key is the child plus its
own submission id and version, so a push repeated after a lost answer stores nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from garrison.server.agents.service import aware
from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.auth.tokens import new_token, token_hash
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from garrison.server.federation import signing
from garrison.server.federation.models import FederationChild, FederationReceivedReport
from garrison.server.federation.schemas import (
    ChildOut,
    Figures,
    JoinIn,
    JoinOut,
    PushedReport,
    PushIn,
    PushOut,
    ReportKey,
    Totals,
)
from garrison.server.reports.models import ReportSubmission
from garrison.server.reports.statistics import Statistics
from garrison.server.units import service as units
from garrison.server.units.models import Unit

JOIN_PREFIX = "gsf_"
#: How far the child's clock may be from ours when it pushes; beyond it the push is refused as stale.
MAX_CLOCK_SKEW = timedelta(minutes=10)
#: A child is stale after this many of its push intervals without a push.
STALE_AFTER_INTERVALS = 3

_STATISTICS = TypeAdapter(Statistics)

State = Literal["waiting", "fresh", "stale", "revoked"]


def _admin(scope: Scope) -> None:
    # The routes already require a whole-tree administrator; the service says so too, for any other caller.
    if not (scope.everything and scope.writable):
        raise Forbidden("administrators of the whole tree only")


# -- registering, revoking ------------------------------------------------------------------------------------


def register(
    session: Session, scope: Scope, actor: Actor, name: str, unit_id: int, days: float
) -> tuple[FederationChild, str]:
    """A new child standing for ``unit_id``, and its one-time join token (only its hash is kept)."""
    _admin(scope)
    unit = units.get(session, scope, unit_id)
    if session.scalar(select(FederationChild.id).where(FederationChild.name == name)) is not None:
        raise Conflict(f"a child server named {name!r} exists already")
    taken = select(FederationChild.name).where(FederationChild.unit_id == unit.id, FederationChild.revoked.is_(False))
    if (other := session.scalar(taken)) is not None:
        raise Conflict(f"the child server {other!r} already reports for this unit; revoke it first")
    token = new_token(JOIN_PREFIX)
    child = FederationChild(
        name=name,
        unit_id=unit.id,
        created_by=actor.user_id,
        join_token_hash=token_hash(token),
        join_expires_at=utcnow() + timedelta(days=days),
        aggregates=[],
    )
    session.add(child)
    session.flush()
    record(session, actor, "federation.child_register", "federation_child", child.id, unit_id=unit.id, name=name)
    return child, token


def new_join_token(
    session: Session, scope: Scope, actor: Actor, child_id: int, days: float
) -> tuple[FederationChild, str]:
    """A new one-time token for a child that lost its key (its next join replaces the key it had)."""
    _admin(scope)
    child = get(session, child_id)
    if child.revoked:
        raise Conflict("this child server was revoked; register it again under a new name")
    token = new_token(JOIN_PREFIX)
    child.join_token_hash = token_hash(token)
    child.join_expires_at = utcnow() + timedelta(days=days)
    record(session, actor, "federation.child_token", "federation_child", child.id, unit_id=child.unit_id)
    return child, token


def revoke(session: Session, scope: Scope, actor: Actor, child_id: int) -> FederationChild:
    """The child's pushes are refused from now on; what it sent stays."""
    _admin(scope)
    child = get(session, child_id)
    if not child.revoked:
        child.revoked = True
        child.revoked_at = utcnow()
        child.join_token_hash = None
        record(session, actor, "federation.child_revoke", "federation_child", child.id, unit_id=child.unit_id)
    return child


def children(session: Session) -> Sequence[FederationChild]:
    return session.scalars(select(FederationChild).order_by(FederationChild.name)).all()


def get(session: Session, child_id: int) -> FederationChild:
    child = session.get(FederationChild, child_id)
    if child is None:
        raise NotFound(f"no child server {child_id}")
    return child


# -- the child's requests -------------------------------------------------------------------------------------


def join(session: Session, body: JoinIn, address: str) -> JoinOut:
    """Trade a join token for the child's registration: its public key is stored, the token is spent."""
    child = session.scalar(
        select(FederationChild).where(FederationChild.join_token_hash == token_hash(body.token)).with_for_update()
    )
    if child is None or child.revoked:
        raise Unauthorized("unknown or already used join token; ask the parent's administrators for a new one")
    if child.join_expires_at is None or aware(child.join_expires_at) < utcnow():
        raise Unauthorized("this join token has expired; ask the parent's administrators for a new one")
    try:
        signing.parse_public(body.public_key)
    except ValueError as exc:
        raise BadRequest(f"the public key is not an Ed25519 key: {exc}") from None
    child.public_key = body.public_key
    child.join_token_hash = None
    child.join_expires_at = None
    child.joined_at = utcnow()
    child.last_sequence = 0  # a new key starts a new sequence
    child.software_version = body.software_version
    child.push_seconds = body.push_seconds or None
    child.last_address = address
    unit = session.get(Unit, child.unit_id)
    assert unit is not None  # noqa: S101 - RESTRICT keeps the unit while the child exists
    top_id = int(unit.path.strip("/").split("/")[0])
    top = session.get(Unit, top_id)
    actor = Actor(None, f"child server {child.name}", address)
    record(session, actor, "federation.join", "federation_child", child.id, unit_id=child.unit_id)
    return JoinOut(
        child_id=child.id, name=child.name, unit_id=unit.id, unit_name=unit.name, parent_name=top.name if top else ""
    )


def receive_push(
    session: Session, child_header: str, signature: str, body: bytes, address: str, now: datetime | None = None
) -> PushOut:
    """Check and store one push (see the module's docstring for the order of the checks)."""
    now = now or utcnow()
    if not child_header.isdigit() or len(child_header) > 10:
        raise Unauthorized("the push does not say which child server sent it")
    child = session.scalar(select(FederationChild).where(FederationChild.id == int(child_header)).with_for_update())
    if child is None:
        raise Unauthorized("unknown child server; join again with a new token")
    if child.revoked:
        raise Unauthorized("this child server was revoked by the parent's administrators")
    if child.public_key is None:
        raise Unauthorized("this child server has not joined yet")
    if not signing.verify(child.public_key, body, signature):
        raise Unauthorized("the push's signature does not verify with this child server's key")
    try:
        push = PushIn.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(f"the push is not valid: {exc.error_count()} problem(s), first: {_first(exc)}") from None
    if push.child_id != child.id:
        raise Unauthorized("the push names another child server than the one that signed it")
    if push.sequence <= child.last_sequence:
        raise Conflict(f"replayed push: sequence {push.sequence} is not after {child.last_sequence}")
    sent_at = aware(push.sent_at)
    if abs(now - sent_at) > MAX_CLOCK_SKEW:
        raise Conflict(
            f"stale push: sent at {sent_at.isoformat()} by the child's clock, received at {now.isoformat()}; "
            "check both servers' clocks (NTP)"
        )
    child.aggregates = [
        {"year": q.year, "quarter": q.quarter, "statistics": _statistics(q.statistics).to_json()} for q in push.quarters
    ]
    child.last_sequence = push.sequence
    child.received_at = now
    child.child_clock = sent_at
    child.software_version = push.software_version
    child.push_seconds = push.push_seconds or None
    child.last_address = address
    acknowledged = [_store_report(session, child, report, address) for report in push.reports]
    return PushOut(received_at=now, acknowledged=acknowledged)


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(map(str, error['loc']))}: {error['msg']}"


def _statistics(figures: dict[str, Any]) -> Statistics:
    try:
        return _STATISTICS.validate_python(figures)
    except ValidationError as exc:
        raise BadRequest(f"figures that are not Garrison statistics: {_first(exc)}") from None


def _store_report(session: Session, child: FederationChild, report: PushedReport, address: str) -> ReportKey:
    key = ReportKey(id=report.id, version=report.version)
    known = select(FederationReceivedReport.id).where(
        FederationReceivedReport.child_id == child.id,
        FederationReceivedReport.child_submission_id == report.id,
        FederationReceivedReport.child_version == report.version,
    )
    if session.scalar(known) is not None:
        return key
    figures = _statistics(report.figures).to_json()
    # The child's versions count its own corrections; here the child's unit may have reports of other origins,
    # so the stored version is the next free one for that unit and quarter (the child's is kept in ``info``).
    latest = session.scalar(
        select(func.max(ReportSubmission.version)).where(
            ReportSubmission.unit_id == child.unit_id,
            ReportSubmission.year == report.year,
            ReportSubmission.quarter == report.quarter,
        )
    )
    submission = ReportSubmission(
        unit_id=child.unit_id,
        year=report.year,
        quarter=report.quarter,
        version=(latest or 0) + 1,
        figures=figures,
        info={
            **report.info,
            "child_submission_id": report.id,
            "child_version": report.version,
            "child_unit_name": report.unit_name,
        },
        submitted_at=aware(report.submitted_at),
        submitted_by=None,
        submitted_by_name=report.submitted_by_name,
        received_from=child.name,
    )
    session.add(submission)
    session.flush()
    session.add(
        FederationReceivedReport(
            child_id=child.id,
            child_submission_id=report.id,
            child_version=report.version,
            submission_id=submission.id,
        )
    )
    actor = Actor(None, f"child server {child.name}", address)
    record(
        session, actor, "federation.report_received", "report_submission", submission.id, unit_id=child.unit_id,
        year=report.year, quarter=report.quarter, version=submission.version,
    )  # fmt: skip
    return key


# -- what the console and the API show ------------------------------------------------------------------------


def state_of(child: FederationChild, default_seconds: float, now: datetime | None = None) -> State:
    """``fresh`` when the last push is younger than three of the child's intervals (its own setting, else
    ``default_seconds``), ``stale`` when older, ``waiting`` before it joined and pushed, ``revoked``."""
    if child.revoked:
        return "revoked"
    if child.received_at is None:
        return "waiting"
    interval = child.push_seconds or default_seconds or 900.0
    age = (now or utcnow()) - aware(child.received_at)
    return "fresh" if age <= timedelta(seconds=interval * STALE_AFTER_INTERVALS) else "stale"


def quarter_statistics(child: FederationChild, year: int, quarter: int) -> Statistics | None:
    for item in child.aggregates or []:
        if item.get("year") == year and item.get("quarter") == quarter:
            return Statistics.from_json(item["statistics"])
    return None


def figures(stats: Statistics, year: int, quarter: int) -> Figures:
    return Figures(
        year=year,
        quarter=quarter,
        declared=stats.endpoints.declared,
        enrolled=stats.current.enrolled,
        active=stats.endpoints.active,
        online=stats.endpoints.online,
        protected=stats.endpoints.protected,
        detections=stats.current.detections,
        infected_endpoints=stats.current.infected_endpoints,
        removed=stats.current.removed,
        outstanding=stats.current.outstanding,
        false_positives=stats.current.false_positives,
    )


def child_out(session: Session, child: FederationChild, year: int, quarter: int, default_seconds: float) -> ChildOut:
    unit = session.get(Unit, child.unit_id)
    received = session.scalar(
        select(func.count()).select_from(FederationReceivedReport).where(FederationReceivedReport.child_id == child.id)
    )
    stats = quarter_statistics(child, year, quarter)
    return ChildOut(
        id=child.id,
        name=child.name,
        unit_id=child.unit_id,
        unit_name=unit.name if unit else "",
        state=state_of(child, default_seconds),
        created_at=child.created_at,
        join_expires_at=child.join_expires_at,
        joined_at=child.joined_at,
        received_at=child.received_at,
        child_clock=child.child_clock,
        software_version=child.software_version,
        push_seconds=child.push_seconds,
        reports_received=received or 0,
        figures=figures(stats, year, quarter) if stats else None,
    )


def totals(listed: Sequence[ChildOut], year: int, quarter: int) -> Totals:
    """The sum of the quarter's figures over the children not revoked that sent them. Computers on different
    servers are different computers, so every count adds up (distinct malware names would not: not summed)."""
    counted = [c.figures for c in listed if c.figures is not None and c.state != "revoked"]
    names = [name for name in Figures.model_fields if name not in ("year", "quarter")]
    summed = {name: sum(getattr(f, name) for f in counted) for name in names}
    total = Figures(year=year, quarter=quarter, **summed)
    return Totals(year=year, quarter=quarter, children=len(counted), figures=total)
