"""Enrollment: an agent trades a unit's enrollment token for its own credential."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EnrollRequest(BaseModel):
    token: str = Field(min_length=10, max_length=256)
    hostname: str = Field(min_length=1, max_length=255)
    os: str = Field(default="", max_length=64)
    os_version: str = Field(default="", max_length=128)
    agent_version: str = Field(default="", max_length=64)


class EnrollResponse(BaseModel):
    """The agent's identity. ``secret`` is shown once; the server keeps only its hash."""

    agent_id: str
    secret: str
    unit_id: int
    heartbeat_seconds: int
