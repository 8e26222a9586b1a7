"""Wire shapes of federation: what a child sends (join, push), what the parent answers, and the admin views."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from garrison.server.wire import Id, UtcDateTime

#: The format of a push body; a parent refuses formats it does not know.
PUSH_FORMAT = 1
#: Quarters of figures in one push (the child sends the current and the previous one).
MAX_QUARTERS = 4
#: Submitted reports in one push; a child with more sends the rest in further pushes of the same pass.
MAX_REPORTS = 50

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Version = Annotated[str, StringConstraints(max_length=64)]
Year = Annotated[int, Field(ge=2000, le=2100)]
Quarter = Annotated[int, Field(ge=1, le=4)]
PushSeconds = Annotated[float, Field(ge=0, le=7 * 86400)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- child → parent ---------------------------------------------------------------------------------------------


class JoinIn(_Strict):
    token: Annotated[str, StringConstraints(min_length=8, max_length=128)]
    public_key: Annotated[str, StringConstraints(min_length=40, max_length=64)]
    software_version: Version = ""
    push_seconds: PushSeconds = 0


class JoinOut(BaseModel):
    child_id: int
    name: str
    unit_id: int
    unit_name: str
    parent_name: str  # the top of the parent's tree, for the child's console


class QuarterFigures(_Strict):
    year: Year
    quarter: Quarter
    statistics: dict[str, Any]  # Statistics.to_json() of the child's whole tree; checked by the parent


class PushedReport(_Strict):
    id: Id  # the submission's id on the child
    version: Annotated[int, Field(ge=1, le=1000)]
    unit_name: Annotated[str, StringConstraints(max_length=255)]
    year: Year
    quarter: Quarter
    figures: dict[str, Any]
    info: dict[str, Any]
    submitted_at: datetime
    submitted_by_name: Annotated[str, StringConstraints(max_length=255)] = ""


class PushIn(_Strict):
    format: Literal[1]
    child_id: Id
    sequence: Annotated[int, Field(ge=1, le=2**63 - 1)]
    sent_at: datetime  # the child's clock
    software_version: Version = ""
    push_seconds: PushSeconds = 0
    quarters: Annotated[list[QuarterFigures], Field(max_length=MAX_QUARTERS)]
    reports: Annotated[list[PushedReport], Field(max_length=MAX_REPORTS)] = []


class ReportKey(BaseModel):
    id: int
    version: int


class PushOut(BaseModel):
    received_at: UtcDateTime
    acknowledged: list[ReportKey]


# -- people (parent side) ---------------------------------------------------------------------------------------


class ChildIn(_Strict):
    name: Name
    unit_id: Id
    days: Annotated[float, Field(gt=0, le=30)] = 7


class Figures(BaseModel):
    """A child's (or the children's total) figures for one quarter: the computers now and the quarter's counts."""

    year: int
    quarter: int
    declared: int
    enrolled: int
    active: int
    online: int
    protected: int
    detections: int
    infected_endpoints: int
    removed: int
    outstanding: int
    false_positives: int


class ChildOut(BaseModel):
    id: int
    name: str
    unit_id: int
    unit_name: str
    state: Literal["waiting", "fresh", "stale", "revoked"]
    created_at: UtcDateTime
    join_expires_at: UtcDateTime | None
    joined_at: UtcDateTime | None
    received_at: UtcDateTime | None
    child_clock: UtcDateTime | None
    software_version: str
    push_seconds: float | None
    reports_received: int
    figures: Figures | None  # of the parent's current quarter, when the child sent it


class NewChild(ChildOut):
    token: str  # shown once
    command: str  # what to run on the child host


class Totals(BaseModel):
    year: int
    quarter: int
    children: int  # children whose figures of the quarter are counted
    figures: Figures


class ChildFigures(BaseModel):
    child: ChildOut
    quarters: list[dict[str, Any]]  # as the child sent them: year, quarter, statistics


# -- this server as a child -------------------------------------------------------------------------------------


class LinkOut(BaseModel):
    joined: bool
    parent_url: str | None = None
    parent_name: str | None = None
    child_id: int | None = None
    name: str | None = None
    unit_name: str | None = None
    fingerprint: str | None = None
    joined_at: UtcDateTime | None = None
    last_push_at: UtcDateTime | None = None
    last_error: str | None = None
    last_error_at: UtcDateTime | None = None
