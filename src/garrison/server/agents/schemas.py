"""Wire shapes of enrollment tokens and agents, as people see them in the console and the API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from garrison.server.wire import ID_MAX, Id, UtcDateTime


class EnrollmentTokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    unit_id: Id
    days: float = Field(default=7, gt=0, le=365)
    max_uses: int | None = Field(default=None, ge=1, le=ID_MAX)


class EnrollmentTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    unit_id: int
    created_at: UtcDateTime
    expires_at: UtcDateTime
    max_uses: int | None
    uses: int
    revoked: bool


class NewEnrollmentToken(EnrollmentTokenOut):
    """Returned once at creation: ``token`` is never shown again."""

    token: str


class AgentOut(BaseModel):
    id: str
    unit_id: int
    hostname: str
    os: str
    os_version: str
    agent_version: str
    enrolled_at: UtcDateTime
    last_seen_at: UtcDateTime | None
    last_address: str | None
    state: str
    state_since: UtcDateTime | None
    realtime_enabled: bool
    signature_date: UtcDateTime | None
    inventory: dict[str, Any]
