"""The files agents keep in quarantine, as the server knows them: learnt from detection events that say a file
was quarantined (with its quarantine id), and changed by the restore and delete tasks agents complete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from garrison.protocol.events import Action, DetectionEvent
from garrison.protocol.tasks import QuarantineState, TaskKind
from garrison.server.agents.models import Agent
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.errors import NotFound
from garrison.server.tasks.models import QuarantinedFile, Task
from garrison.server.units import service as units


def learn(session: Session, agent: Agent, events: Sequence[DetectionEvent]) -> None:
    """Record the files these detection events put in quarantine (each once, however often it is reported)."""
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.action is not Action.QUARANTINE or not event.action_ok or not event.quarantine_id:
            continue
        rows.setdefault(
            event.quarantine_id,
            {
                "agent_id": agent.id,
                "item_id": event.quarantine_id,
                "unit_id": agent.unit_id,
                "detection_id": str(event.id),
                "path": event.path,
                "name": event.name,
                "sha256": event.sha256 if not event.chain else None,  # a member's hash is not the file's
                "size": event.size if not event.chain else 0,
                "quarantined_at": event.occurred_at,
                "state": QuarantineState.QUARANTINED.value,
            },
        )
    if rows:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = insert(QuarantinedFile).values(list(rows.values()))
        session.execute(statement.on_conflict_do_nothing(index_elements=["agent_id", "item_id"]))


def task_done(session: Session, agent: Agent, task: Task) -> None:
    item = session.get(QuarantinedFile, (agent.id, task.params.get("quarantine_id", "")))
    if item is None:
        return
    item.state = QuarantineState.RESTORED if task.kind is TaskKind.RESTORE else QuarantineState.DELETED
    item.state_at = utcnow()
    item.state_task_id = task.id


def get(session: Session, scope: Scope, agent_id: str, item_id: str) -> QuarantinedFile:
    query = units.within(select(QuarantinedFile), scope, QuarantinedFile.unit_id).where(
        QuarantinedFile.agent_id == agent_id, QuarantinedFile.item_id == item_id
    )
    item = session.scalar(query)
    if item is None:
        raise NotFound(f"no quarantined file {item_id} on computer {agent_id}")
    return item


def search(
    session: Session,
    scope: Scope,
    *,
    state: QuarantineState | None = None,
    agent_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
    order: Sequence[ColumnElement[Any]] = (),
) -> tuple[list[tuple[QuarantinedFile, Agent]], int]:
    """The quarantined files in ``scope`` with their computers, and how many there are; newest first unless
    ``order`` (``ORDER BY`` clauses over both) says otherwise."""
    query = units.within(
        select(QuarantinedFile, Agent).join(Agent, Agent.id == QuarantinedFile.agent_id), scope, QuarantinedFile.unit_id
    )
    if state is not None:
        query = query.where(QuarantinedFile.state == state)
    if agent_id is not None:
        query = query.where(QuarantinedFile.agent_id == agent_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    query = (
        query.order_by(*order)
        if order
        else query.order_by(QuarantinedFile.quarantined_at.desc(), QuarantinedFile.item_id)
    )
    page = session.execute(query.limit(limit).offset(offset)).all()
    return [(item, agent) for item, agent in page], total
