"""Events agents send: detections and task results. Each has a UUID chosen by the agent, so a retried batch
never duplicates anything on the server."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import BaseModel, Field

from garrison.protocol.tasks import TaskResult


class Action(StrEnum):
    REPORT = "report"
    QUARANTINE = "quarantine"
    DELETE = "delete"


class DetectionEvent(BaseModel):
    id: UUID
    occurred_at: datetime
    path: str = Field(max_length=4096)
    chain: list[str] = Field(default_factory=list, max_length=32)
    name: str = Field(max_length=255)
    kind: str = Field(max_length=32)
    database: str | None = Field(default=None, max_length=1024)
    signature: str | None = Field(default=None, max_length=255)
    md5: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    size: int = Field(default=0, ge=0)
    action: Action = Action.REPORT
    action_ok: bool = True
    action_detail: str | None = Field(default=None, max_length=1024)
    quarantine_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")


class EventBatch(BaseModel):
    detections: list[DetectionEvent] = Field(default_factory=list, max_length=1000)
    task_results: list[TaskResult] = Field(default_factory=list, max_length=1000)


class BatchAck(BaseModel):
    """Every id the server now holds (new or seen before): the agent may delete them from its outbox."""

    accepted: list[UUID]
    duplicates: int = 0
