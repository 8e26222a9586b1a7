"""Policies: create, change and assign them; merge the layers that apply to an agent; the fleet-wide allow-list.

Who may do what: a policy belongs to a unit. Its owner's admins (and the province's) may change it; admins of
units below may *see* it (it applies to them) and assign it within their subtree, but not change it. Groups and
unit assignments follow the same rule as everything else: only inside the caller's subtree. The allow-list is
fleet-wide, so only a province admin (whole tree, writable) may change it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from garrison.protocol.policy import AgentPolicy, PolicyDocument, PolicySource, check_layer, merge
from garrison.server.agents.models import Agent
from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.detections import service as detections
from garrison.server.detections.models import Triage
from garrison.server.errors import BadRequest, Conflict, Forbidden, NotFound
from garrison.server.policies.models import AgentGroup, AllowedFile, Policy, PolicyAssignment, PolicyState
from garrison.server.units import service as units
from garrison.server.units.models import Unit


def changed(session: Session) -> None:
    """Say that some computer's policy document may have changed (see :class:`PolicyState`)."""
    session.execute(update(PolicyState).where(PolicyState.id == 1).values(generation=secrets.randbits(62)))


def _writable(scope: Scope) -> None:
    if not scope.writable:
        raise Forbidden("read-only access")


def ancestor_ids(path: str) -> list[int]:
    """The units on a materialised path, from the top down (``/1/4/9/`` → ``[1, 4, 9]``)."""
    return [int(part) for part in path.strip("/").split("/") if part]


def _scope_ancestors(session: Session, scope: Scope) -> list[int]:
    """Units above the scope's root (their policies apply to the scope, so it may read them)."""
    return [] if scope.everything else ancestor_ids(scope.path)[:-1]


def layer_of(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` validated as a policy layer; a clear :class:`BadRequest` when it is not one."""
    try:
        return check_layer(settings)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'policy'}: {error['msg']}" for error in exc.errors()
        )
        raise BadRequest(f"invalid policy: {problems}") from None
    except ValueError as exc:
        raise BadRequest(f"invalid policy: {exc}") from None


# -- policies -------------------------------------------------------------------------------------------------


def visible_query(scope: Scope) -> Select[Policy]:
    query = select(Policy)
    if scope.everything:
        return query
    above = ancestor_ids(scope.path)[:-1]
    return query.join(Unit, Unit.id == Policy.owner_unit_id).where(
        or_(Unit.path.startswith(scope.path), Policy.owner_unit_id.in_(above))
    )


def list_policies(session: Session, scope: Scope) -> Sequence[Policy]:
    return session.scalars(visible_query(scope).order_by(Policy.name, Policy.id)).all()


def get_policy(session: Session, scope: Scope, policy_id: int) -> Policy:
    policy = session.scalar(visible_query(scope).where(Policy.id == policy_id))
    if policy is None:
        raise NotFound(f"no policy {policy_id}")
    return policy


def may_change(session: Session, scope: Scope, policy: Policy) -> bool:
    owner = session.get(Unit, policy.owner_unit_id)
    return scope.writable and owner is not None and scope.contains(owner.path)


def _changeable(session: Session, scope: Scope, policy_id: int) -> Policy:
    _writable(scope)
    policy = get_policy(session, scope, policy_id)
    if not may_change(session, scope, policy):
        raise Forbidden("this policy belongs to a unit above yours: you may use it, not change it")
    return policy


def _flush_unique(session: Session, what: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"{what} already exists") from None


def create_policy(
    session: Session,
    scope: Scope,
    actor: Actor,
    *,
    owner_unit_id: int,
    name: str,
    description: str = "",
    settings: dict[str, Any],
) -> Policy:
    _writable(scope)
    owner = units.get(session, scope, owner_unit_id)
    policy = Policy(
        name=name,
        description=description,
        owner_unit_id=owner.id,
        settings=layer_of(settings),
        created_by=actor.user_id,
    )
    session.add(policy)
    _flush_unique(session, f"a policy named {name!r} in this unit")
    record(
        session,
        actor,
        "policy.create",
        "policy",
        policy.id,
        unit_id=owner.id,
        name=name,
        settings=sorted(policy.settings),
    )
    return policy


def update_policy(
    session: Session,
    scope: Scope,
    actor: Actor,
    policy_id: int,
    *,
    name: str,
    description: str,
    settings: dict[str, Any],
) -> Policy:
    policy = _changeable(session, scope, policy_id)
    policy.name = name
    policy.description = description
    policy.settings = layer_of(settings)
    policy.version += 1
    policy.updated_at = utcnow()
    changed(session)
    _flush_unique(session, f"a policy named {name!r} in this unit")
    record(
        session,
        actor,
        "policy.update",
        "policy",
        policy.id,
        unit_id=policy.owner_unit_id,
        name=name,
        version=policy.version,
        settings=sorted(policy.settings),
    )
    return policy


def delete_policy(session: Session, scope: Scope, actor: Actor, policy_id: int) -> None:
    policy = _changeable(session, scope, policy_id)
    used = session.scalar(
        select(func.count()).select_from(PolicyAssignment).where(PolicyAssignment.policy_id == policy.id)
    )
    groups = session.scalar(select(func.count()).select_from(AgentGroup).where(AgentGroup.policy_id == policy.id))
    if used or groups:
        raise Conflict(f"this policy is in use by {used} units and {groups} groups; assign them another first")
    record(session, actor, "policy.delete", "policy", policy.id, unit_id=policy.owner_unit_id, name=policy.name)
    session.delete(policy)
    session.flush()


def assignments(session: Session, scope: Scope) -> dict[int, int]:
    """``{unit id: policy id}`` for the units in scope that have a policy of their own."""
    query = units.within(select(PolicyAssignment), scope, PolicyAssignment.unit_id)
    return {row.unit_id: row.policy_id for row in session.scalars(query)}


def assign(session: Session, scope: Scope, actor: Actor, unit_id: int, policy_id: int | None) -> None:
    """Give a unit its own policy (``None``: it only inherits)."""
    _writable(scope)
    unit = units.get(session, scope, unit_id)
    current = session.get(PolicyAssignment, unit.id)
    if policy_id is None:
        if current is not None:
            session.delete(current)
            session.flush()
            changed(session)
            record(session, actor, "policy.unassign", "unit", unit.id, unit_id=unit.id, policy_id=current.policy_id)
        return
    policy = get_policy(session, scope, policy_id)
    if current is None:
        session.add(PolicyAssignment(unit_id=unit.id, policy_id=policy.id, assigned_by=actor.user_id))
    else:
        current.policy_id = policy.id
        current.assigned_by = actor.user_id
        current.assigned_at = utcnow()
    session.flush()
    changed(session)
    record(session, actor, "policy.assign", "unit", unit.id, unit_id=unit.id, policy_id=policy.id, policy=policy.name)


# -- groups ---------------------------------------------------------------------------------------------------


def list_groups(session: Session, scope: Scope) -> Sequence[AgentGroup]:
    query = units.within(select(AgentGroup), scope, AgentGroup.unit_id)
    return session.scalars(query.order_by(AgentGroup.name, AgentGroup.id)).all()


def get_group(session: Session, scope: Scope, group_id: int) -> AgentGroup:
    group = session.scalar(units.within(select(AgentGroup), scope, AgentGroup.unit_id).where(AgentGroup.id == group_id))
    if group is None:
        raise NotFound(f"no group {group_id}")
    return group


def save_group(
    session: Session,
    scope: Scope,
    actor: Actor,
    group_id: int | None,
    *,
    unit_id: int,
    name: str,
    description: str,
    policy_id: int | None,
) -> AgentGroup:
    _writable(scope)
    unit = units.get(session, scope, unit_id)
    if policy_id is not None:
        get_policy(session, scope, policy_id)
    if group_id is None:
        group = AgentGroup(unit_id=unit.id, name=name, description=description, policy_id=policy_id)
        session.add(group)
        action = "group.create"
    else:
        group = get_group(session, scope, group_id)
        if group.unit_id != unit.id:
            members = session.scalars(select(Agent).where(Agent.group_id == group.id))
            if any(not _unit_path(session, a.unit_id).startswith(unit.path) for a in members):
                raise Conflict("some computers of this group are outside the new unit; take them out first")
        group.unit_id, group.name, group.description, group.policy_id = unit.id, name, description, policy_id
        action = "group.update"
    _flush_unique(session, f"a group named {name!r} in this unit")
    changed(session)
    record(session, actor, action, "group", group.id, unit_id=unit.id, name=name, policy_id=policy_id)
    return group


def delete_group(session: Session, scope: Scope, actor: Actor, group_id: int) -> None:
    _writable(scope)
    group = get_group(session, scope, group_id)
    session.execute(update(Agent).where(Agent.group_id == group.id).values(group_id=None))
    changed(session)
    record(session, actor, "group.delete", "group", group.id, unit_id=group.unit_id, name=group.name)
    session.delete(group)
    session.flush()


def _unit_path(session: Session, unit_id: int) -> str:
    return session.scalar(select(Unit.path).where(Unit.id == unit_id)) or ""


def set_group(session: Session, scope: Scope, actor: Actor, agent: Agent, group_id: int | None) -> None:
    """Put an agent (already checked to be in scope) into a group of a unit above or at its own, or none."""
    _writable(scope)
    if group_id is not None:
        group = get_group(session, scope, group_id)
        if not _unit_path(session, agent.unit_id).startswith(_unit_path(session, group.unit_id)):
            raise BadRequest("a computer can only join a group of its own unit or of a unit above it")
    agent.group_id = group_id
    session.flush()
    record(session, actor, "agent.group", "agent", agent.id, unit_id=agent.unit_id, group_id=group_id)


# -- what applies to an agent ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layer:
    policy: Policy
    applies_to: str  # "unit <id>" or "group <id>"


def layers_for(session: Session, unit_path: str, group_id: int | None) -> list[Layer]:
    """The policy layers for a computer of the unit at ``unit_path`` in group ``group_id``, in merge order."""
    ids = ancestor_ids(unit_path)
    rows = session.execute(
        select(PolicyAssignment.unit_id, Policy)
        .join(Policy, Policy.id == PolicyAssignment.policy_id)
        .where(PolicyAssignment.unit_id.in_(ids))
    ).all()
    by_unit = {unit_id: policy for unit_id, policy in rows}
    layers = [Layer(by_unit[unit_id], f"unit {unit_id}") for unit_id in ids if unit_id in by_unit]
    if group_id is not None:
        group_policy = session.scalar(
            select(Policy).join(AgentGroup, AgentGroup.policy_id == Policy.id).where(AgentGroup.id == group_id)
        )
        if group_policy is not None:
            layers.append(Layer(group_policy, f"group {group_id}"))
    return layers


def effective(session: Session, unit_path: str, group_id: int | None) -> tuple[AgentPolicy, list[PolicySource]]:
    layers = layers_for(session, unit_path, group_id)
    policy = merge([layer.policy.settings for layer in layers])
    sources = [
        PolicySource(
            policy_id=layer.policy.id,
            name=layer.policy.name,
            version=layer.policy.version,
            applies_to=layer.applies_to,
            settings=sorted(layer.policy.settings),
        )
        for layer in layers
    ]
    return policy, sources


def allow_list(session: Session) -> list[str]:
    return list(session.scalars(select(AllowedFile.sha256).order_by(AllowedFile.sha256)))


def _allow_stamp(session: Session) -> list[int]:
    """Changes whenever the allow-list does (rows are only added and removed, ids never reused), without reading
    it all on every heartbeat."""
    count, last = session.execute(select(func.count(), func.max(AllowedFile.id))).one()
    return [int(count), int(last or 0)]


def _revision(policy: AgentPolicy, enforced: list[str], stamp: list[int]) -> str:
    canonical = json.dumps(
        {"policy": policy.model_dump(mode="json"), "enforced": enforced, "allow": stamp}, sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _enforced(sources: list[PolicySource]) -> list[str]:
    """The settings some layer sets: those the agent applies."""
    return sorted({key for source in sources for key in source.settings})


def document_for(session: Session, agent: Agent) -> PolicyDocument:
    """The policy an agent must apply, with its revision (a digest of the policy and the allow-list's state)."""
    policy, sources = effective(session, _unit_path(session, agent.unit_id), agent.group_id)
    enforced = _enforced(sources)
    return PolicyDocument(
        revision=_revision(policy, enforced, _allow_stamp(session)),
        policy=policy,
        sources=sources,
        enforced=enforced,
        allow_sha256=allow_list(session),
        issued_at=utcnow(),
    )


#: ``(unit path, group, generation, default interval)`` → ``(revision, interval)``, per server process.
_TERMS: dict[tuple[str, int | None, int, float], tuple[str, float]] = {}
_TERMS_MAX = 50_000


def heartbeat_terms(session: Session, agent: Agent, default_interval: float) -> tuple[str, float]:
    """The revision :func:`document_for` would give, and the heartbeat interval (the policy's when a layer sets
    it, else the server's default). One small query when nothing changed since this process last worked it out
    for a computer of the same unit and group: the cache is keyed by :class:`PolicyState`'s generation, which every
    change raises, so several server processes never answer from a stale cache."""
    current = select(PolicyState.generation).where(PolicyState.id == 1).scalar_subquery()
    path, generation = session.execute(select(Unit.path, current).where(Unit.id == agent.unit_id)).one()
    key = (path, agent.group_id, generation, default_interval)
    terms = _TERMS.get(key)
    if terms is None:
        policy, sources = effective(session, path, agent.group_id)
        enforced = _enforced(sources)
        interval = float(policy.heartbeat_seconds) if "heartbeat_seconds" in enforced else default_interval
        terms = (_revision(policy, enforced, _allow_stamp(session)), interval)
        if len(_TERMS) >= _TERMS_MAX:
            _TERMS.clear()
        _TERMS[key] = terms
    return terms


# -- the allow-list -------------------------------------------------------------------------------------------


def _fleet_admin(scope: Scope) -> None:
    if not (scope.everything and scope.writable):
        raise Forbidden("only a province administrator may allow a file on every computer")


def allow_file(
    session: Session, scope: Scope, actor: Actor, sha256: str, reason: str, detection_name: str | None = None
) -> AllowedFile:
    _fleet_admin(scope)
    sha256 = sha256.lower()
    existing = session.scalar(select(AllowedFile).where(AllowedFile.sha256 == sha256))
    if existing is not None:
        return existing
    row = AllowedFile(sha256=sha256, reason=reason, detection_name=detection_name, added_by=actor.user_id)
    session.add(row)
    session.flush()
    changed(session)
    record(session, actor, "allowlist.add", "file", sha256, reason=reason, detection=detection_name)
    return row


def allow_detection(session: Session, scope: Scope, actor: Actor, detection_id: str, reason: str) -> AllowedFile:
    """Allow the file of a detection on every computer, and mark the detection a false positive."""
    _fleet_admin(scope)
    detection = detections.get(session, scope, detection_id)
    if not detection.sha256 or detection.chain:
        raise BadRequest("only a whole file with a known SHA-256 can be allowed (not a part of an archive)")
    row = allow_file(session, scope, actor, detection.sha256, reason, detection.name)
    if detection.triage is not Triage.FALSE_POSITIVE:
        detections.set_triage(session, scope, actor, detection.id, Triage.FALSE_POSITIVE)
    return row


def disallow_file(session: Session, scope: Scope, actor: Actor, sha256: str) -> None:
    _fleet_admin(scope)
    row = session.scalar(select(AllowedFile).where(AllowedFile.sha256 == sha256.lower()))
    if row is None:
        raise NotFound(f"{sha256} is not on the allow-list")
    session.delete(row)
    session.flush()
    changed(session)
    record(session, actor, "allowlist.remove", "file", row.sha256)


def allowed_files(session: Session) -> Sequence[AllowedFile]:
    return session.scalars(select(AllowedFile).order_by(AllowedFile.added_at.desc())).all()
