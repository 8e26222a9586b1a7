"""Wire shape of audit events."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from garrison.server.wire import UtcDateTime


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: UtcDateTime
    actor_name: str
    action: str
    target_type: str
    target_id: str | None
    unit_id: int | None
    details: dict[str, Any]
    address: str | None
