"""Enrollment tokens, enrollment, agent credentials, heartbeats and agent states."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from garrison.protocol.enrollment import EnrollRequest, EnrollResponse
from garrison.protocol.heartbeat import Heartbeat, HeartbeatResponse
from garrison.server.agents.models import Agent, EnrollmentToken
from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.auth.tokens import new_token, token_hash
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, Forbidden, NotFound, Unauthorized
from garrison.server.units import service as units

ENROLLMENT_PREFIX = "gse_"
#: An agent not heard from in this many heartbeat intervals (plus a minute) is offline.
OFFLINE_AFTER_INTERVALS = 3
STALE_AFTER = timedelta(days=14)


def aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes for timezone-aware columns; they were stored in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- enrollment tokens --------------------------------------------------------------------------------------


def create_enrollment_token(
    session: Session, scope: Scope, actor: Actor, unit_id: int, name: str, days: float, max_uses: int | None
) -> tuple[EnrollmentToken, str]:
    if not scope.writable:
        raise Forbidden("read-only access")
    if not 0 < days <= 365:
        raise BadRequest("an enrollment token lasts between a few minutes and 365 days")
    unit = units.get(session, scope, unit_id)
    token = new_token(ENROLLMENT_PREFIX)
    row = EnrollmentToken(
        name=name,
        token_hash=token_hash(token),
        unit_id=unit.id,
        created_by=actor.user_id,
        expires_at=utcnow() + timedelta(days=days),
        max_uses=max_uses,
    )
    session.add(row)
    session.flush()
    record(session, actor, "enrollment_token.create", "enrollment_token", row.id, unit_id=unit.id, name=name)
    return row, token


def enrollment_tokens(session: Session, scope: Scope) -> Sequence[EnrollmentToken]:
    query = units.within(select(EnrollmentToken), scope, EnrollmentToken.unit_id)
    return session.scalars(query.order_by(EnrollmentToken.id.desc())).all()


def revoke_enrollment_token(session: Session, scope: Scope, actor: Actor, token_id: int) -> EnrollmentToken:
    if not scope.writable:
        raise Forbidden("read-only access")
    query = units.within(select(EnrollmentToken), scope, EnrollmentToken.unit_id)
    row = session.scalar(query.where(EnrollmentToken.id == token_id))
    if row is None:
        raise NotFound(f"no enrollment token {token_id}")
    row.revoked = True
    record(session, actor, "enrollment_token.revoke", "enrollment_token", row.id, unit_id=row.unit_id)
    return row


# -- agents -------------------------------------------------------------------------------------------------


def enroll(session: Session, request: EnrollRequest, address: str, heartbeat_seconds: int) -> EnrollResponse:
    """Trade an enrollment token for an agent identity; the reason for a refusal is said plainly."""
    row = session.scalar(select(EnrollmentToken).where(EnrollmentToken.token_hash == token_hash(request.token)))
    if row is None:
        raise Unauthorized("unknown enrollment token; copy it again from the console")
    if row.revoked:
        raise Unauthorized("this enrollment token was revoked; ask for a new one")
    if aware(row.expires_at) < utcnow():
        raise Unauthorized("this enrollment token has expired; ask for a new one")
    if row.max_uses is not None and row.uses >= row.max_uses:
        raise Unauthorized("this enrollment token has been used as many times as allowed")
    secret = new_token()
    agent = Agent(
        id=str(uuid.uuid4()),
        unit_id=row.unit_id,
        secret_hash=token_hash(secret),
        hostname=request.hostname,
        os=request.os,
        os_version=request.os_version,
        agent_version=request.agent_version,
        enrolled_with=row.id,
        last_seen_at=utcnow(),
        last_address=address,
    )
    session.add(agent)
    session.flush()
    actor = Actor(None, f"agent {request.hostname}", address)
    record(session, actor, "agent.enroll", "agent", agent.id, unit_id=agent.unit_id, hostname=request.hostname)
    # Last, so that the token's row is locked only from here to the commit: one atomic UPDATE counts the use and
    # checks the limit (a read-modify-write would lose counts, and let a use-limited token be used too often,
    # when agents enroll at the same moment); refused, the whole enrollment rolls back.
    counted = session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.id == row.id,
            or_(EnrollmentToken.max_uses.is_(None), EnrollmentToken.uses < EnrollmentToken.max_uses),
        )
        .values(uses=EnrollmentToken.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if counted.rowcount != 1:  # type: ignore[attr-defined]
        raise Unauthorized("this enrollment token has been used as many times as allowed")
    return EnrollResponse(agent_id=agent.id, secret=secret, unit_id=agent.unit_id, heartbeat_seconds=heartbeat_seconds)


def authenticate(session: Session, agent_id: str, secret: str) -> Agent:
    agent = session.get(Agent, agent_id)
    if agent is None or agent.secret_hash != token_hash(secret):
        raise Unauthorized("unknown agent or wrong credential; enroll again")
    if agent.revoked:
        raise Unauthorized("this agent was revoked; enroll again with a new token")
    return agent


def heartbeat(session: Session, agent: Agent, beat: Heartbeat, address: str, interval: float) -> HeartbeatResponse:
    inventory = beat.inventory
    agent.hostname = inventory.hostname
    agent.os = inventory.os
    agent.os_version = inventory.os_version
    agent.agent_version = inventory.agent_version
    agent.realtime_enabled = inventory.realtime_enabled
    agent.firewall_enabled = inventory.firewall_enabled
    agent.signature_date = inventory.signature_date
    agent.inventory = inventory.model_dump(mode="json")
    agent.policy_revision = inventory.policy_revision
    if inventory.updates is not None:
        status = inventory.updates
        agent.signature_release = status.release
        agent.signature_installed_at = status.installed_at
        agent.update_checked_at = status.last_check_at
        agent.update_error = status.last_error or status.software_error
        agent.update_error_at = status.last_error_at if agent.update_error else None
    agent.heartbeat_seconds = interval
    agent.last_seen_at = utcnow()
    agent.last_address = address
    # Jitter spreads agents that start together (after a power cut, say) over the interval.
    return HeartbeatResponse(next_seconds=interval * random.uniform(0.9, 1.1), server_time=utcnow())  # noqa: S311


class AgentState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    STALE = "stale"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class StateInfo:
    state: AgentState
    since: datetime | None


def state_of(agent: Agent, interval: float, now: datetime | None = None) -> StateInfo:
    """Online if heard from within a few intervals (the agent's own, which its policy may set, else ``interval``);
    offline (since the last contact) up to STALE_AFTER; stale."""
    now = now or utcnow()
    interval = agent.heartbeat_seconds or interval
    if agent.revoked:
        return StateInfo(AgentState.REVOKED, aware(agent.revoked_at) if agent.revoked_at else None)
    seen = aware(agent.last_seen_at) if agent.last_seen_at else None
    if seen is not None and now - seen <= timedelta(seconds=interval * OFFLINE_AFTER_INTERVALS + 60):
        return StateInfo(AgentState.ONLINE, seen)
    if seen is not None and now - seen <= STALE_AFTER:
        return StateInfo(AgentState.OFFLINE, seen)
    return StateInfo(AgentState.STALE, seen)


def list_agents(session: Session, scope: Scope) -> Sequence[Agent]:
    return session.scalars(units.within(select(Agent), scope, Agent.unit_id).order_by(Agent.hostname)).all()


def get_agent(session: Session, scope: Scope, agent_id: str) -> Agent:
    agent = session.scalar(units.within(select(Agent), scope, Agent.unit_id).where(Agent.id == agent_id))
    if agent is None:
        raise NotFound(f"no agent {agent_id}")
    return agent


def revoke(session: Session, scope: Scope, actor: Actor, agent_id: str) -> Agent:
    if not scope.writable:
        raise Forbidden("read-only access")
    agent = get_agent(session, scope, agent_id)
    agent.revoked = True
    agent.revoked_at = utcnow()
    record(session, actor, "agent.revoke", "agent", agent.id, unit_id=agent.unit_id, hostname=agent.hostname)
    return agent
