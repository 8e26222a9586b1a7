"""Heartbeats: the agent says it is alive and what it runs; the server says when to call again."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from garrison.protocol.tasks import TaskOrder
from garrison.protocol.updates import UpdateOrder, UpdateStatus


class Inventory(BaseModel):
    hostname: str = Field(min_length=1, max_length=255)
    os: str = Field(default="", max_length=64)
    os_version: str = Field(default="", max_length=128)
    ips: list[str] = Field(default_factory=list, max_length=64)
    macs: list[str] = Field(default_factory=list, max_length=64)
    agent_version: str = Field(default="", max_length=64)
    engine_version: str = Field(default="", max_length=64)
    signature_version: str = Field(default="", max_length=64)
    signature_date: datetime | None = None
    realtime_enabled: bool = False
    firewall_enabled: bool | None = None
    last_scan_at: datetime | None = None
    errors: list[str] = Field(default_factory=list, max_length=32)
    events_dropped: int = Field(default=0, ge=0)
    policy_revision: str = Field(default="", max_length=64)
    realtime_backend: str = Field(default="", max_length=16)
    updates: UpdateStatus | None = None


class Heartbeat(BaseModel):
    inventory: Inventory


class HeartbeatResponse(BaseModel):
    """``next_seconds`` already includes jitter; agents wait that long before the next heartbeat. When
    ``policy_revision`` differs from the agent's, it fetches its policy; ``tasks`` are its pending tasks;
    ``updates`` names the signature release and agent version it should run (verified through TUF)."""

    next_seconds: float
    server_time: datetime
    policy_revision: str | None = None
    tasks: list[TaskOrder] = Field(default_factory=list)
    updates: UpdateOrder | None = None
