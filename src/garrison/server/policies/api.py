"""REST endpoints of policies, agent groups, the effective policy of a computer, and the allow-list."""

from __future__ import annotations

from fastapi import APIRouter

from garrison.protocol.policy import PolicyDocument
from garrison.server.agents import service as agents
from garrison.server.deps import CurrentCaller, DbSession
from garrison.server.errors import ERROR_RESPONSES
from garrison.server.policies import service
from garrison.server.policies.schemas import (
    AgentGroupIn,
    AllowedOut,
    AllowIn,
    AllowReason,
    AssignmentIn,
    GroupIn,
    GroupOut,
    PolicyIn,
    PolicyOut,
    PolicyUpdate,
)
from garrison.server.wire import PathId

router = APIRouter(prefix="/api/v1", tags=["policies"], responses=ERROR_RESPONSES)


@router.get("/policies", response_model=list[PolicyOut])
def list_policies(session: DbSession, caller: CurrentCaller) -> list[PolicyOut]:
    return [PolicyOut.model_validate(p) for p in service.list_policies(session, caller.scope)]


@router.post("/policies", response_model=PolicyOut, status_code=201)
def create_policy(body: PolicyIn, session: DbSession, caller: CurrentCaller) -> PolicyOut:
    policy = service.create_policy(
        session,
        caller.scope,
        caller.actor,
        owner_unit_id=body.owner_unit_id,
        name=body.name,
        description=body.description,
        settings=body.settings,
    )
    return PolicyOut.model_validate(policy)


@router.get("/policies/{policy_id}", response_model=PolicyOut)
def get_policy(policy_id: PathId, session: DbSession, caller: CurrentCaller) -> PolicyOut:
    return PolicyOut.model_validate(service.get_policy(session, caller.scope, policy_id))


@router.put("/policies/{policy_id}", response_model=PolicyOut)
def update_policy(policy_id: PathId, body: PolicyUpdate, session: DbSession, caller: CurrentCaller) -> PolicyOut:
    policy = service.update_policy(
        session,
        caller.scope,
        caller.actor,
        policy_id,
        name=body.name,
        description=body.description,
        settings=body.settings,
    )
    return PolicyOut.model_validate(policy)


@router.delete("/policies/{policy_id}", status_code=204)
def delete_policy(policy_id: PathId, session: DbSession, caller: CurrentCaller) -> None:
    service.delete_policy(session, caller.scope, caller.actor, policy_id)


@router.put("/units/{unit_id}/policy", status_code=204)
def assign_policy(unit_id: PathId, body: AssignmentIn, session: DbSession, caller: CurrentCaller) -> None:
    service.assign(session, caller.scope, caller.actor, unit_id, body.policy_id)


@router.get("/groups", response_model=list[GroupOut])
def list_groups(session: DbSession, caller: CurrentCaller) -> list[GroupOut]:
    return [GroupOut.model_validate(g) for g in service.list_groups(session, caller.scope)]


@router.post("/groups", response_model=GroupOut, status_code=201)
def create_group(body: GroupIn, session: DbSession, caller: CurrentCaller) -> GroupOut:
    group = service.save_group(
        session,
        caller.scope,
        caller.actor,
        None,
        unit_id=body.unit_id,
        name=body.name,
        description=body.description,
        policy_id=body.policy_id,
    )
    return GroupOut.model_validate(group)


@router.put("/groups/{group_id}", response_model=GroupOut)
def update_group(group_id: PathId, body: GroupIn, session: DbSession, caller: CurrentCaller) -> GroupOut:
    group = service.save_group(
        session,
        caller.scope,
        caller.actor,
        group_id,
        unit_id=body.unit_id,
        name=body.name,
        description=body.description,
        policy_id=body.policy_id,
    )
    return GroupOut.model_validate(group)


@router.delete("/groups/{group_id}", status_code=204)
def delete_group(group_id: PathId, session: DbSession, caller: CurrentCaller) -> None:
    service.delete_group(session, caller.scope, caller.actor, group_id)


@router.put("/agents/{agent_id}/group", status_code=204)
def set_agent_group(agent_id: str, body: AgentGroupIn, session: DbSession, caller: CurrentCaller) -> None:
    agent = agents.get_agent(session, caller.scope, agent_id)
    service.set_group(session, caller.scope, caller.actor, agent, body.group_id)


@router.get("/agents/{agent_id}/policy", response_model=PolicyDocument)
def agent_policy(agent_id: str, session: DbSession, caller: CurrentCaller) -> PolicyDocument:
    """The policy this computer must apply, the layers it was made from, and its revision (compare it with the
    ``policy_revision`` the computer reports to see whether it has applied it)."""
    return service.document_for(session, agents.get_agent(session, caller.scope, agent_id))


@router.get("/allowlist", response_model=list[AllowedOut])
def list_allowed(session: DbSession, caller: CurrentCaller) -> list[AllowedOut]:
    del caller  # any logged-in person may read it: it applies to every computer
    return [AllowedOut.model_validate(row) for row in service.allowed_files(session)]


@router.post("/allowlist", response_model=AllowedOut, status_code=201)
def allow(body: AllowIn, session: DbSession, caller: CurrentCaller) -> AllowedOut:
    return AllowedOut.model_validate(service.allow_file(session, caller.scope, caller.actor, body.sha256, body.reason))


@router.post("/detections/{detection_id}/allow", response_model=AllowedOut, status_code=201)
def allow_detection(detection_id: str, body: AllowReason, session: DbSession, caller: CurrentCaller) -> AllowedOut:
    """Allow the detected file on every computer and mark the detection a false positive."""
    row = service.allow_detection(session, caller.scope, caller.actor, detection_id, body.reason)
    return AllowedOut.model_validate(row)


@router.delete("/allowlist/{sha256}", status_code=204)
def disallow(sha256: str, session: DbSession, caller: CurrentCaller) -> None:
    service.disallow_file(session, caller.scope, caller.actor, sha256)
