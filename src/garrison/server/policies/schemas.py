"""Wire shapes of policies, agent groups and the allow-list."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from garrison.server.wire import Id, UtcDateTime


class PolicyIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=4000)
    owner_unit_id: Id
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Only the settings this policy changes; see AgentPolicy for each."
    )


class PolicyUpdate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=4000)
    settings: dict[str, Any] = Field(default_factory=dict)


class PolicyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    owner_unit_id: int
    settings: dict[str, Any]
    version: int
    created_at: UtcDateTime
    updated_at: UtcDateTime


class AssignmentIn(BaseModel):
    policy_id: Id | None = Field(description="null: the unit only inherits from the units above it")


class GroupIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    description: str = Field(default="", max_length=4000)
    unit_id: Id
    policy_id: Id | None = None


class GroupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    unit_id: int
    policy_id: int | None


class AgentGroupIn(BaseModel):
    group_id: Id | None


class AllowIn(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    reason: str = Field(min_length=1, max_length=1024)


class AllowReason(BaseModel):
    reason: str = Field(min_length=1, max_length=1024)


class AllowedOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sha256: str
    reason: str
    detection_name: str | None
    added_at: UtcDateTime
