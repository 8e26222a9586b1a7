"""Wire shapes of tasks, their per-computer runs, quarantined files and samples."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from garrison.protocol.tasks import QuarantineState, TaskKind
from garrison.server.wire import Id, UtcDateTime


class TaskIn(BaseModel):
    kind: TaskKind
    params: dict[str, Any] = Field(default_factory=dict)
    unit_id: Id | None = Field(default=None, description="every computer of this unit and the units below it")
    group_id: Id | None = Field(default=None, description="every computer of this group")
    agent_ids: list[str] = Field(default_factory=list, max_length=10_000, description="these computers")
    hours: float = Field(default=72, gt=0, le=30 * 24, description="how long computers that are off may take")
    comment: str = Field(default="", max_length=1024)


class TaskOut(BaseModel):
    id: int
    kind: TaskKind
    params: dict[str, Any]
    comment: str
    unit_id: int
    target: str
    created_by: str
    created_at: UtcDateTime
    expires_at: UtcDateTime
    cancelled_at: UtcDateTime | None
    counts: dict[str, int] = Field(description="computers by state: queued, sent, running, done, failed, ...")
    total: int
    waiting: int = Field(description="computers that have not run it: queued, sent or expired")


class RunOut(BaseModel):
    agent_id: str
    hostname: str
    state: str
    sent_at: UtcDateTime | None
    updated_at: UtcDateTime | None
    message: str
    result: dict[str, Any]


class QuarantinedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agent_id: str
    item_id: str
    unit_id: int
    detection_id: str | None
    path: str
    name: str
    sha256: str | None
    size: int
    quarantined_at: UtcDateTime
    state: QuarantineState
    state_at: UtcDateTime | None


class SampleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: int
    agent_id: str
    path: str
    size: int
    sha256: str
    received_at: UtcDateTime
