"""Policies: what an agent should do, decided centrally and sent to it with a revision.

A policy is a set of *layers*: the policies assigned to the agent's unit and to each unit above it (from the
province down), then the policy of the agent's group. Each layer sets only the settings it changes; a later layer
wins. Lists (paths, exclusions, schedules) are replaced, never merged, so what an agent does can always be read
off one layer. The server sends the merged result, :class:`AgentPolicy`, in a :class:`PolicyDocument` whose
``revision`` changes whenever anything in it changes, with the names of the settings some layer sets
(``enforced``). The agent applies those; every other setting stays as the computer's own configuration says (the
defaults below are the agent's own defaults), as administrators of central consoles expect: a policy enforces
what it names and nothing else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from garrison.protocol.events import Action

PathList = list[str]
MAX_PATHS = 256


def check_cron(expression: str) -> str:
    """A five-field cron expression (``minute hour day month weekday``), normalised to single spaces."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("a schedule has five fields: minute hour day-of-month month day-of-week, e.g. '0 12 * * 1-5'")
    normal = " ".join(fields)
    if not croniter.is_valid(normal):
        raise ValueError(f"not a valid schedule: {normal!r}")
    return normal


class ScheduledScan(BaseModel):
    """A scan that runs on a cron schedule, each time after a random delay of up to ``random_delay_minutes`` (so
    that a thousand computers do not all start reading their disks at noon). A run missed while the computer was
    off happens when the agent next starts."""

    model_config = ConfigDict(extra="forbid")

    cron: str = Field(max_length=128)
    paths: PathList = Field(default_factory=list, max_length=MAX_PATHS)
    random_delay_minutes: int = Field(default=30, ge=0, le=24 * 60)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)


class PolicyLimits(BaseModel):
    """Scan limits in megabytes and counts; ``None`` keeps the engine's default."""

    model_config = ConfigDict(extra="forbid")

    max_file_mb: int | None = Field(default=None, ge=1, le=4096)
    max_scan_mb: int | None = Field(default=None, ge=1, le=16384)
    max_depth: int | None = Field(default=None, ge=0, le=64)
    max_members: int | None = Field(default=None, ge=1, le=1_000_000)
    max_scan_seconds: int | None = Field(default=None, ge=1, le=86400)


class AgentPolicy(BaseModel):
    """Everything a policy decides. The field defaults are the agent's own defaults, which apply where no layer
    sets a setting and the computer's configuration says nothing either.

    Attributes:
        scan_paths: what a scan covers when it names no paths (on demand, scheduled, "scan now").
        exclude: glob patterns never scanned, by any kind of scan.
        action: what scheduled and on-demand scans do with a detected file.
        schedules: scheduled scans.
        realtime_enabled, realtime_paths, realtime_action: real-time protection (on needs paths: the policy's, or
            the computer's own when the policy sets none).
        heartbeat_seconds: how often the agent reports (the server adds jitter).
        update_seconds: how often the agent looks for signature updates.
        limits: scan limits.
    """

    model_config = ConfigDict(extra="forbid")

    scan_paths: PathList = Field(default_factory=list, max_length=MAX_PATHS)
    exclude: PathList = Field(default_factory=list, max_length=MAX_PATHS)
    action: Action = Action.REPORT
    schedules: list[ScheduledScan] = Field(default_factory=list, max_length=32)
    realtime_enabled: bool = False
    realtime_paths: PathList = Field(default_factory=list, max_length=MAX_PATHS)
    realtime_action: Action = Action.REPORT
    heartbeat_seconds: int = Field(default=60, ge=10, le=24 * 3600)
    update_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    limits: PolicyLimits = Field(default_factory=PolicyLimits)


SETTINGS = tuple(AgentPolicy.model_fields)


def check_layer(settings: dict[str, Any]) -> dict[str, Any]:
    """Validate one layer (a partial policy): known settings only, each valid. Returns it in wire form."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown policy settings: {', '.join(unknown)}")
    validated = AgentPolicy.model_validate(settings)
    return validated.model_dump(mode="json", include=set(settings))


def merge(layers: list[dict[str, Any]]) -> AgentPolicy:
    """The policy made of ``layers`` over the defaults, the last layer winning setting by setting."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return AgentPolicy.model_validate(merged)


class PolicySource(BaseModel):
    """One layer the policy was made from, for people reading it."""

    policy_id: int
    name: str
    version: int
    applies_to: str  # "unit <id>" or "group <id>"
    settings: list[str]


class PolicyDocument(BaseModel):
    """What ``GET /api/v1/agent/policy`` answers."""

    revision: str = Field(max_length=64)
    policy: AgentPolicy
    sources: list[PolicySource] = Field(default_factory=list)
    enforced: list[str] = Field(default_factory=list, description="the settings some layer sets")
    allow_sha256: list[str] = Field(default_factory=list)
    issued_at: datetime | None = None
