"""Wire shapes of the organisation tree."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from garrison.server.units.models import UnitKind
from garrison.server.wire import Id


class UnitIn(BaseModel):
    name: str = Field(min_length=1, max_length=255)
    kind: UnitKind
    parent_id: Id | None = None
    code: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    declared_servers: int = Field(default=0, ge=0, le=1_000_000)
    declared_workstations: int = Field(default=0, ge=0, le=1_000_000)
    declared_other: int = Field(default=0, ge=0, le=1_000_000)


class UnitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: UnitKind
    parent_id: int | None
    code: str | None
    path: str
    declared_servers: int
    declared_workstations: int
    declared_other: int
    declared_total: int
