"""Wire shapes of detections."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from garrison.server.detections.models import Triage
from garrison.server.wire import UtcDateTime


class DetectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    agent_id: str
    unit_id: int
    occurred_at: UtcDateTime
    received_at: UtcDateTime
    path: str
    chain: list[Any]
    name: str
    kind: str
    database: str | None
    signature: str | None
    md5: str | None
    sha256: str | None
    size: int
    action: str
    action_ok: bool
    action_detail: str | None
    triage: Triage


class TriageIn(BaseModel):
    triage: Triage
