"""REST endpoints: what agents call (enroll, heartbeat, events) and what people call (tokens, agents)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from garrison.protocol.enrollment import EnrollRequest, EnrollResponse
from garrison.protocol.events import BatchAck, EventBatch
from garrison.protocol.heartbeat import Heartbeat, HeartbeatResponse
from garrison.protocol.policy import PolicyDocument
from garrison.server.agents import service
from garrison.server.agents.models import Agent
from garrison.server.agents.schemas import AgentOut, EnrollmentTokenIn, EnrollmentTokenOut, NewEnrollmentToken
from garrison.server.deps import CurrentCaller, DbSession, Settings, client_address
from garrison.server.detections import service as detections
from garrison.server.errors import ERROR_RESPONSES, Unauthorized
from garrison.server.policies import service as policies
from garrison.server.tasks import quarantine
from garrison.server.tasks import service as tasks
from garrison.server.updates.rollout import OfferCache
from garrison.server.wire import PathId

agent_router = APIRouter(prefix="/api/v1/agent", tags=["agent protocol"], responses=ERROR_RESPONSES)
router = APIRouter(prefix="/api/v1", tags=["agents"], responses=ERROR_RESPONSES)


def current_agent(request: Request, session: DbSession) -> Agent:
    """The agent behind a request: ``Authorization: Agent <agent id>:<secret>``."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    agent_id, _, secret = credential.partition(":")
    if scheme != "Agent" or not agent_id or not secret:
        raise Unauthorized("agent credential missing")
    return service.authenticate(session, agent_id, secret)


CurrentAgent = Annotated[Agent, Depends(current_agent)]


@agent_router.post("/enroll", response_model=EnrollResponse, status_code=201)
def enroll(body: EnrollRequest, request: Request, session: DbSession, settings: Settings) -> EnrollResponse:
    return service.enroll(session, body, client_address(request), int(settings.heartbeat_seconds))


@agent_router.post("/heartbeat", response_model=HeartbeatResponse)
def heartbeat(
    body: Heartbeat, request: Request, agent: CurrentAgent, session: DbSession, settings: Settings
) -> HeartbeatResponse:
    """Record the agent's inventory; answer when to call again, the revision of the policy it must apply, its
    pending tasks, and the signature release and agent version it should run."""
    revision, interval = policies.heartbeat_terms(session, agent, settings.heartbeat_seconds)
    answer = service.heartbeat(session, agent, body, client_address(request), interval)
    answer.policy_revision = revision
    answer.tasks = tasks.orders_for(session, agent)
    offers: OfferCache = request.app.state.offers
    answer.updates = offers.get(session).for_agent(agent.group_id)
    return answer


@agent_router.get("/policy", response_model=PolicyDocument)
def policy(agent: CurrentAgent, session: DbSession) -> PolicyDocument:
    """The policy this agent must apply now (fetched when the heartbeat's ``policy_revision`` is not its own)."""
    return policies.document_for(session, agent)


@agent_router.post("/events", response_model=BatchAck)
def events(body: EventBatch, agent: CurrentAgent, session: DbSession) -> BatchAck:
    """Store detections and task results; answer with every id now held, new or already known (safe to retry)."""
    ack = detections.ingest(session, agent, body)
    quarantine.learn(session, agent, body.detections)
    tasks.apply_results(session, agent, body.task_results)
    ack.accepted.extend(dict.fromkeys(result.id for result in body.task_results))
    return ack


@router.post("/enrollment-tokens", response_model=NewEnrollmentToken, status_code=201)
def create_token(body: EnrollmentTokenIn, session: DbSession, caller: CurrentCaller) -> NewEnrollmentToken:
    row, token = service.create_enrollment_token(
        session, caller.scope, caller.actor, body.unit_id, body.name, body.days, body.max_uses
    )
    return NewEnrollmentToken(**EnrollmentTokenOut.model_validate(row).model_dump(), token=token)


@router.get("/enrollment-tokens", response_model=list[EnrollmentTokenOut])
def list_tokens(session: DbSession, caller: CurrentCaller) -> list[EnrollmentTokenOut]:
    return [EnrollmentTokenOut.model_validate(t) for t in service.enrollment_tokens(session, caller.scope)]


@router.delete("/enrollment-tokens/{token_id}", status_code=204)
def revoke_token(token_id: PathId, session: DbSession, caller: CurrentCaller) -> None:
    service.revoke_enrollment_token(session, caller.scope, caller.actor, token_id)


def _agent_out(agent: Agent, interval: float) -> AgentOut:
    state = service.state_of(agent, interval)
    return AgentOut(
        id=agent.id,
        unit_id=agent.unit_id,
        hostname=agent.hostname,
        os=agent.os,
        os_version=agent.os_version,
        agent_version=agent.agent_version,
        enrolled_at=agent.enrolled_at,
        last_seen_at=agent.last_seen_at,
        last_address=agent.last_address,
        state=state.state.value,
        state_since=state.since,
        realtime_enabled=agent.realtime_enabled,
        signature_date=agent.signature_date,
        inventory=agent.inventory,
    )


@router.get("/agents", response_model=list[AgentOut])
def list_agents(session: DbSession, caller: CurrentCaller, settings: Settings) -> list[AgentOut]:
    return [_agent_out(a, settings.heartbeat_seconds) for a in service.list_agents(session, caller.scope)]


@router.get("/agents/{agent_id}", response_model=AgentOut)
def get_agent(agent_id: str, session: DbSession, caller: CurrentCaller, settings: Settings) -> AgentOut:
    return _agent_out(service.get_agent(session, caller.scope, agent_id), settings.heartbeat_seconds)


@router.post("/agents/{agent_id}/revoke", response_model=AgentOut)
def revoke_agent(agent_id: str, session: DbSession, caller: CurrentCaller, settings: Settings) -> AgentOut:
    agent = service.revoke(session, caller.scope, caller.actor, agent_id)
    return _agent_out(agent, settings.heartbeat_seconds)
