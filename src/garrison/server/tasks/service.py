"""Tasks: create them for a unit, a group or chosen computers; hand them to agents; record what agents answer.

A task is *expanded* when it is created: one :class:`TaskRun` per target computer, so every computer's state
(queued, sent, running, done, failed, expired) is a row, and "who has not run it yet" is a query. Computers
enrolled after the task was created are not targets. Runs still open when the task expires become ``expired``;
this is applied lazily (before a task is shown and before tasks are handed out), so no background job is needed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.orm import Session

from garrison.protocol.tasks import RunStatus, TaskKind, TaskOrder, TaskResult
from garrison.server.agents.models import Agent
from garrison.server.agents.service import aware
from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.errors import BadRequest, Conflict, Forbidden, NotFound
from garrison.server.policies import service as policies
from garrison.server.tasks import quarantine
from garrison.server.tasks.models import RunState, Task, TaskRun
from garrison.server.units import service as units
from garrison.server.units.models import Unit

QUARANTINE_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_TARGETS = 100_000
MAX_HOURS = 30 * 24


@dataclass(frozen=True, slots=True)
class Target:
    """Which computers: every computer of ``unit_id``'s subtree, of group ``group_id``, or the listed ones."""

    unit_id: int | None = None
    group_id: int | None = None
    agent_ids: tuple[str, ...] = ()


def check_params(kind: TaskKind, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters a task of ``kind`` takes, checked; a :class:`BadRequest` says what is wrong."""
    if kind is TaskKind.SCAN:
        paths = params.get("paths") or []
        if not isinstance(paths, list) or not all(isinstance(p, str) and 0 < len(p) <= 4096 for p in paths):
            raise BadRequest("a scan takes a list of paths (empty: the paths of the computer's policy)")
        if len(paths) > 256:
            raise BadRequest("a scan takes at most 256 paths")
        return {"paths": paths}
    if kind is TaskKind.UPDATE:
        return {}
    quarantine_id = params.get("quarantine_id")
    if kind in (TaskKind.RESTORE, TaskKind.DELETE):
        if not isinstance(quarantine_id, str) or not QUARANTINE_ID.match(quarantine_id):
            raise BadRequest("restoring or deleting a quarantined file needs the file's quarantine id")
        return {"quarantine_id": quarantine_id}
    path = params.get("path")
    if isinstance(quarantine_id, str) and QUARANTINE_ID.match(quarantine_id) and not path:
        return {"quarantine_id": quarantine_id}
    if isinstance(path, str) and 0 < len(path) <= 4096 and not quarantine_id:
        return {"path": path}
    raise BadRequest("collecting a file needs either its path on the computer or its quarantine id")


def _targets(session: Session, scope: Scope, target: Target) -> tuple[Unit, list[Agent], str]:
    """The target computers (enrolled, not revoked, inside the scope), the unit whose subtree holds them all, and
    a description for people."""
    enrolled = select(Agent).where(Agent.revoked.is_(False))
    query = units.within(enrolled, scope, Agent.unit_id)
    if target.agent_ids:
        chosen = set(target.agent_ids)
        agents = [a for a in session.scalars(query.where(Agent.id.in_(chosen)))]
        if len(agents) != len(chosen):
            missing = sorted(chosen - {a.id for a in agents})
            raise NotFound(f"no computer {missing[0]} (or it was revoked)")
        paths = [_path(session, a.unit_id) for a in agents]
        common = _common_unit(session, scope, paths)
        names = ", ".join(sorted(a.hostname for a in agents)[:3]) + ("…" if len(agents) > 3 else "")
        return common, agents, f"computers: {names}"
    if target.group_id is not None:
        group = policies.get_group(session, scope, target.group_id)
        agents = list(session.scalars(query.where(Agent.group_id == group.id)))
        return units.get(session, scope, group.unit_id), agents, f"group: {group.name}"
    if target.unit_id is not None:
        unit = units.get(session, scope, target.unit_id)
        subtree = select(Unit.id).where(Unit.path.startswith(unit.path))
        agents = list(session.scalars(enrolled.where(Agent.unit_id.in_(subtree))))
        return unit, agents, f"unit: {unit.name}"
    raise BadRequest("say which computers: a unit, a group or a list of computers")


def _path(session: Session, unit_id: int) -> str:
    return session.scalar(select(Unit.path).where(Unit.id == unit_id)) or "/"


def _common_unit(session: Session, scope: Scope, paths: list[str]) -> Unit:
    parts = [policies.ancestor_ids(p) for p in paths]
    common: list[int] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    # The deepest unit shared by every target that the caller may see (scope roots are always visible).
    for unit_id in reversed(common):
        unit = session.get(Unit, unit_id)
        if unit is not None and scope.contains(unit.path):
            return unit
    raise Forbidden("these computers are not all inside your part of the organisation")


def create_task(
    session: Session,
    scope: Scope,
    actor: Actor,
    kind: TaskKind,
    params: dict[str, Any],
    target: Target,
    *,
    hours: float = 72,
    comment: str = "",
) -> Task:
    if not scope.writable:
        raise Forbidden("read-only access")
    if not 0 < hours <= MAX_HOURS:
        raise BadRequest(f"a task waits for computers between a few minutes and {MAX_HOURS // 24} days")
    checked = check_params(kind, params)
    unit, agents, description = _targets(session, scope, target)
    if not agents:
        raise BadRequest("no computer to run it: the unit or group has no enrolled computer")
    if len(agents) > MAX_TARGETS:
        raise BadRequest(f"at most {MAX_TARGETS} computers per task")
    if kind in (TaskKind.RESTORE, TaskKind.DELETE) or "quarantine_id" in checked:
        if len(agents) != 1:
            raise BadRequest("a quarantined file lives on one computer: choose that computer alone")
        quarantine.get(session, scope, agents[0].id, checked["quarantine_id"])
    now = utcnow()
    task = Task(
        kind=kind,
        params=checked,
        comment=comment,
        unit_id=unit.id,
        target=description[:255],
        created_by=actor.user_id,
        created_by_name=actor.name,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    session.add(task)
    session.flush()
    session.add_all(TaskRun(task_id=task.id, agent_id=agent.id, state=RunState.QUEUED) for agent in agents)
    session.flush()
    targets = select(TaskRun.agent_id).where(TaskRun.task_id == task.id)
    session.execute(
        update(Agent).where(Agent.id.in_(targets)).values(open_tasks=True).execution_options(synchronize_session=False)
    )
    record(
        session,
        actor,
        f"task.{kind.value}",
        "task",
        task.id,
        unit_id=unit.id,
        target=description,
        computers=len(agents),
        params=checked,
    )
    return task


def _expire(session: Session, *conditions: Any) -> None:
    """Mark open runs of expired tasks ``expired``."""
    overdue = select(Task.id).where(Task.expires_at < utcnow())
    session.execute(
        update(TaskRun)
        .where(TaskRun.state.in_(RunState.OPEN), TaskRun.task_id.in_(overdue), *conditions)
        .values(state=RunState.EXPIRED, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def orders_for(session: Session, agent: Agent) -> list[TaskOrder]:
    """The tasks ``agent`` has to run: queued ones (now marked sent) and sent ones without a final answer (sent
    again: the agent runs each task once, whatever it is given twice).

    Only agents flagged ``open_tasks`` (set when a task is created for them) are looked up; the flag is cleared
    when nothing is left to hand out. The heartbeat has already updated the agent's row, which it keeps locked
    until commit, so a task created meanwhile sets the flag after this clears it, never before.
    """
    if not agent.open_tasks:
        return []
    now = utcnow()
    rows = session.execute(
        select(TaskRun, Task)
        .join(Task, Task.id == TaskRun.task_id)
        .where(TaskRun.agent_id == agent.id, TaskRun.state.in_((RunState.QUEUED, RunState.SENT)))
        .order_by(Task.id)
        .limit(50)
    ).all()
    orders = []
    for run, task in rows:
        if aware(task.expires_at) < now:
            run.state, run.updated_at = RunState.EXPIRED, now
            continue
        if run.state == RunState.QUEUED:
            run.state, run.sent_at, run.updated_at = RunState.SENT, now, now
        orders.append(TaskOrder(id=task.id, kind=task.kind, params=task.params, expires_at=aware(task.expires_at)))
    if not orders and len(rows) < 50:
        agent.open_tasks = False
    return orders


def apply_results(session: Session, agent: Agent, results: Sequence[TaskResult]) -> None:
    """Record what the agent says of its tasks. A final answer is final: a late ``running`` does not undo it,
    and a repeated answer changes nothing. A task handed out before it expired may still report its result
    afterwards (it ran). Answers about tasks that are not this agent's are ignored."""
    for result in sorted(results, key=lambda r: r.occurred_at):
        run = session.get(TaskRun, (result.task_id, agent.id))
        if run is None or run.state in (RunState.DONE, RunState.FAILED, RunState.CANCELLED):
            continue
        if run.state == RunState.EXPIRED and run.sent_at is None:
            continue  # never handed out: whatever this says, it is not about a run of ours
        run.state = result.status.value
        run.updated_at = utcnow()
        run.message = result.message
        run.result = result.result
        if result.status is RunStatus.DONE:
            task = session.get(Task, result.task_id)
            if task is not None and task.kind in (TaskKind.RESTORE, TaskKind.DELETE):
                quarantine.task_done(session, agent, task)


# -- reading --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskSummary:
    task: Task
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def waiting(self) -> int:
        """Computers that have not run it (yet)."""
        return sum(self.counts.get(state, 0) for state in (RunState.QUEUED, RunState.SENT, RunState.EXPIRED))


def _visible(scope: Scope) -> Any:
    return units.within(select(Task), scope, Task.unit_id)


def list_tasks(
    session: Session,
    scope: Scope,
    *,
    kind: TaskKind | None = None,
    limit: int = 50,
    offset: int = 0,
    order: Sequence[ColumnElement[Any]] = (),
) -> tuple[list[TaskSummary], int]:
    """The tasks in ``scope`` (of one kind), newest first unless ``order`` (``ORDER BY`` clauses) says otherwise."""
    _expire(session)
    query = _visible(scope)
    if kind is not None:
        query = query.where(Task.kind == kind)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    query = query.order_by(*order) if order else query.order_by(Task.id.desc())
    tasks = list(session.scalars(query.limit(limit).offset(offset)))
    counts: dict[int, dict[str, int]] = {t.id: {} for t in tasks}
    if tasks:
        rows = session.execute(
            select(TaskRun.task_id, TaskRun.state, func.count())
            .where(TaskRun.task_id.in_(counts))
            .group_by(TaskRun.task_id, TaskRun.state)
        )
        for task_id, state, count in rows:
            counts[task_id][state] = count
    return [TaskSummary(t, counts[t.id]) for t in tasks], total


def get_task(session: Session, scope: Scope, task_id: int) -> TaskSummary:
    task = session.scalar(_visible(scope).where(Task.id == task_id))
    if task is None:
        raise NotFound(f"no task {task_id}")
    _expire(session, TaskRun.task_id == task.id)
    rows = session.execute(
        select(TaskRun.state, func.count()).where(TaskRun.task_id == task.id).group_by(TaskRun.state)
    )
    return TaskSummary(task, {state: count for state, count in rows})


def runs(
    session: Session, scope: Scope, task_id: int, *, states: Sequence[str] = (), limit: int = 100, offset: int = 0
) -> tuple[list[tuple[TaskRun, Agent]], int]:
    """The per-computer runs of a task (inside the caller's scope), filtered by state."""
    task = get_task(session, scope, task_id).task
    query = units.within(
        select(TaskRun, Agent).join(Agent, Agent.id == TaskRun.agent_id).where(TaskRun.task_id == task.id),
        scope,
        Agent.unit_id,
    )
    if states:
        query = query.where(TaskRun.state.in_(states))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = session.execute(query.order_by(Agent.hostname, Agent.id).limit(limit).offset(offset)).all()
    return [(run, agent) for run, agent in page], total


def cancel(session: Session, scope: Scope, actor: Actor, task_id: int) -> Task:
    if not scope.writable:
        raise Forbidden("read-only access")
    task = get_task(session, scope, task_id).task
    if task.cancelled_at is not None:
        raise Conflict("this task was already cancelled")
    task.cancelled_at = utcnow()
    session.execute(
        update(TaskRun)
        .where(and_(TaskRun.task_id == task.id, TaskRun.state.in_((RunState.QUEUED, RunState.SENT))))
        .values(state=RunState.CANCELLED, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    record(session, actor, "task.cancel", "task", task.id, unit_id=task.unit_id)
    return task


def run_for(session: Session, agent: Agent, task_id: int) -> tuple[Task, TaskRun]:
    """The agent's open run of a task (for uploads); :class:`NotFound` otherwise."""
    run = session.get(TaskRun, (task_id, agent.id))
    task = session.get(Task, task_id)
    if run is None or task is None or run.state not in RunState.OPEN:
        raise NotFound(f"no open task {task_id} for this agent")
    return task, run


def agent_runs(session: Session, scope: Scope, agent_id: str, *, limit: int = 20) -> list[tuple[TaskRun, Task]]:
    """The latest tasks of one computer, for its detail page."""
    query = (
        select(TaskRun, Task)
        .join(Task, Task.id == TaskRun.task_id)
        .where(TaskRun.agent_id == agent_id)
        .order_by(Task.id.desc())
        .limit(limit)
    )
    return [(run, task) for run, task in session.execute(units.within(query, scope, Task.unit_id)).all()]


def is_open(task: Task, now: datetime | None = None) -> bool:
    return task.cancelled_at is None and aware(task.expires_at) > (now or utcnow())
