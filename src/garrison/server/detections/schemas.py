"""Wire shapes of detections."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from garrison.server.detections.models import Triage


class DetectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    agent_id: str
    unit_id: int
    occurred_at: datetime
    received_at: datetime
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
