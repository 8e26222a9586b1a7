"""Tasks: work a person asks of agents (scan now, update now, restore or delete a quarantined file, collect a file).

The server hands an agent its pending tasks in every heartbeat answer, until the agent reports a final result or
the task expires. The agent remembers the tasks it has started, so a task handed out twice runs once. Results travel
through the agent's outbox like detections (each with its own UUID), so a result is never lost and never counted
twice.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field


class TaskKind(StrEnum):
    SCAN = "scan"
    UPDATE = "update"
    RESTORE = "restore"
    DELETE = "delete"
    COLLECT = "collect"


class TaskOrder(BaseModel):
    """One task for one agent. ``params`` by kind: scan ``{"paths": [...]}`` (empty: the policy's scan paths);
    restore and delete ``{"quarantine_id": "..."}``; collect ``{"path": "..."}`` or ``{"quarantine_id": "..."}``;
    update ``{}``."""

    id: int
    kind: TaskKind
    params: dict[str, Any] = Field(default_factory=dict)
    expires_at: datetime


class RunStatus(StrEnum):
    """``running`` may be followed by a final status; ``done`` and ``failed`` are final."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TaskResult(BaseModel):
    id: UUID
    task_id: int
    occurred_at: datetime
    status: RunStatus
    message: str = Field(default="", max_length=2000)
    result: dict[str, Any] = Field(default_factory=dict)


class QuarantineState(StrEnum):
    QUARANTINED = "quarantined"
    RESTORED = "restored"
    DELETED = "deleted"
