"""REST endpoints of the reporting calendar: reporting lines, submissions and their documents, the roll-up.

Everyone logged in reads within their scope (auditors too); administrators of a unit or above it change its line
and submit its report. Objects outside the caller's scope answer 404. Figures are given as stored
(``Statistics.to_json``: ISO times in UTC), the frozen ones of a submission or, in the roll-up, the live ones of a
unit that has not submitted (``live: true``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from garrison.server.db import utcnow
from garrison.server.deps import CurrentCaller, DbSession, Settings
from garrison.server.errors import ERROR_RESPONSES, BadRequest
from garrison.server.reports import calendar, quarterly, rollup, statistics, submissions
from garrison.server.reports.exports import Language
from garrison.server.reports.models import ReportSubmission
from garrison.server.units.models import Unit
from garrison.server.wire import ID_MAX, Id, PathId

router = APIRouter(prefix="/api/v1/reporting", tags=["reporting calendar"], responses=ERROR_RESPONSES)

Year = Annotated[int, Field(ge=2000, le=2100)]
Quarter = Annotated[int, Field(ge=1, le=4)]
Text = Annotated[str, Field(max_length=200)]
UnitQuery = Annotated[int | None, Query(ge=1, le=ID_MAX, description="a unit; default the caller's scope")]
YearQuery = Annotated[int | None, Query(ge=2000, le=2100)]
QuarterQuery = Annotated[int | None, Query(ge=1, le=4)]


class LineIn(BaseModel):
    deadline_day: int = Field(ge=calendar.MIN_DAY, le=calendar.MAX_DAY, description="due before this day")
    reminder_days: list[Annotated[int, Field(ge=1, le=calendar.MAX_REMINDER_DAYS)]] = Field(
        max_length=calendar.MAX_REMINDERS, description="days before the deadline"
    )


class LineOut(BaseModel):
    unit_id: int
    unit_name: str
    own: bool  # the unit set it; otherwise inherited from ``from_unit_id`` (None: the regulation's)
    from_unit_id: int | None
    deadline_day: int
    reminder_days: list[int]


class SubmissionIn(BaseModel):
    unit_id: Id
    year: Year
    quarter: Quarter
    number: Text = ""
    symbol: Annotated[str, Field(max_length=64)] | None = Field(None, description="after BC-; default the code")
    recipient: Text = ""
    place: Text = ""
    issued: date | None = Field(None, description="the date line; default today (Vietnam)")
    signer_title: Text = ""
    signer_name: Text = ""
    parent_agency: Text | None = Field(None, description="default the parent unit's name")


class SubmissionOut(BaseModel):
    id: int
    unit_id: int
    year: int
    quarter: int
    version: int
    submitted_at: datetime
    submitted_by: str
    received_from: str | None
    deadline: datetime
    late: bool
    info: dict[str, Any]
    figures: dict[str, Any] | None = None  # only for a single submission


class RollupRowOut(BaseModel):
    unit_id: int
    unit_name: str
    deadline: datetime
    status: submissions.Status
    submission: SubmissionOut | None
    live: bool
    figures: dict[str, Any]


class RollupOut(BaseModel):
    unit_id: int
    year: int
    quarter: int
    rows: list[RollupRowOut]
    submitted: dict[str, Any] | None
    missing: dict[str, Any] | None
    names_exact: bool


def _out(
    session: DbSession, submission: ReportSubmission, rules: dict[int, calendar.Rule], with_figures: bool = False
) -> SubmissionOut:
    unit = session.get(Unit, submission.unit_id)  # in the session already: the caller's scope was checked on it
    path = unit.path if unit is not None else "/"
    due = calendar.deadline_at(calendar.rule_for(path, rules), submission.year, submission.quarter)
    return SubmissionOut(
        id=submission.id,
        unit_id=submission.unit_id,
        year=submission.year,
        quarter=submission.quarter,
        version=submission.version,
        submitted_at=submissions.submitted_at(submission),
        submitted_by=submission.submitted_by_name,
        received_from=submission.received_from,
        deadline=due,
        late=submissions.status(submission, due, due) == "late",
        info=submission.info,
        figures=submission.figures if with_figures else None,
    )


@router.get("/lines", response_model=list[LineOut])
def list_lines(session: DbSession, caller: CurrentCaller, unit_id: UnitQuery = None) -> list[LineOut]:
    """The rule each unit of the subtree sets for the units under it: its own line, or the one it inherits."""
    return [
        LineOut(
            unit_id=view.unit.id,
            unit_name=view.unit.name,
            own=view.own,
            from_unit_id=view.rule.unit_id,
            deadline_day=view.rule.deadline_day,
            reminder_days=list(view.rule.reminder_days),
        )
        for view in calendar.list_lines(session, caller.scope, unit_id)
    ]


@router.put("/lines/{unit_id}", response_model=LineOut)
def set_line(unit_id: PathId, body: LineIn, session: DbSession, caller: CurrentCaller) -> LineOut:
    """Give a unit its own deadline rule for the units under it (recorded in the audit log)."""
    line = calendar.set_line(session, caller.scope, caller.actor, unit_id, body.deadline_day, body.reminder_days)
    view = next(v for v in calendar.list_lines(session, caller.scope, unit_id) if v.unit.id == line.unit_id)
    return LineOut(
        unit_id=view.unit.id, unit_name=view.unit.name, own=True, from_unit_id=view.unit.id,
        deadline_day=line.deadline_day, reminder_days=list(line.reminder_days),
    )  # fmt: skip


@router.delete("/lines/{unit_id}", status_code=204)
def clear_line(unit_id: PathId, session: DbSession, caller: CurrentCaller) -> Response:
    """Remove a unit's own rule: the units under it follow the inherited one again (recorded in the audit log)."""
    calendar.clear_line(session, caller.scope, caller.actor, unit_id)
    return Response(status_code=204)


@router.post("/submissions", response_model=SubmissionOut, status_code=201)
def submit(body: SubmissionIn, session: DbSession, caller: CurrentCaller, settings: Settings) -> SubmissionOut:
    """Submit a unit's quarterly report: its figures now, frozen (a second submission is the next version).
    Open from the first day of the quarter's last month (409 before)."""
    fields = submissions.DocumentFields(
        number=body.number, symbol=body.symbol, recipient=body.recipient, place=body.place, issued=body.issued,
        signer_title=body.signer_title, signer_name=body.signer_name, parent_agency=body.parent_agency,
    )  # fmt: skip
    lines = rollup.document_lines(
        session, caller.scope, body.unit_id, body.year, body.quarter, heartbeat_seconds=settings.heartbeat_seconds
    )
    submission = submissions.submit(
        session, caller, body.unit_id, body.year, body.quarter, fields, heartbeat_seconds=settings.heartbeat_seconds,
        unit_lines=lines,
    )  # fmt: skip
    return _out(session, submission, calendar.rules(session), with_figures=True)


@router.get("/submissions", response_model=list[SubmissionOut])
def list_submissions(
    session: DbSession,
    caller: CurrentCaller,
    unit_id: UnitQuery = None,
    year: YearQuery = None,
    quarter: QuarterQuery = None,
) -> list[SubmissionOut]:
    """Submissions of the caller's subtree (or of one unit), every version, newest first (at most 500)."""
    found = submissions.listing(session, caller.scope, unit_id=unit_id, year=year, quarter=quarter)
    rules = calendar.rules(session)
    return [_out(session, s, rules) for s in found]


@router.get("/submissions/{submission_id}", response_model=SubmissionOut)
def get_submission(submission_id: PathId, session: DbSession, caller: CurrentCaller) -> SubmissionOut:
    """One submission with its frozen figures."""
    submission = submissions.get(session, caller.scope, submission_id)
    return _out(session, submission, calendar.rules(session), with_figures=True)


@router.get(
    "/submissions/{submission_id}/report.{file_format}",
    response_class=Response,
    responses={200: {"content": {t: {} for _, t in quarterly.FORMATS.values()}, "description": "the document"}},
)
def submission_document(
    submission_id: PathId,
    file_format: Literal["docx", "pdf", "xlsx"],
    session: DbSession,
    caller: CurrentCaller,
    lang: Annotated[Language, Query(description="the document's language")] = "vi",
) -> Response:
    """A submission's document, made from its frozen figures and fields (recorded in the audit log)."""
    submission = submissions.get(session, caller.scope, submission_id)
    body, media_type, name = submissions.documents(session, caller.actor, submission, file_format, lang)
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )


@router.get("/rollup", response_model=RollupOut)
def get_rollup(
    session: DbSession,
    caller: CurrentCaller,
    settings: Settings,
    unit_id: Annotated[int, Query(ge=1, le=ID_MAX, description="the parent unit")],
    year: YearQuery = None,
    quarter: QuarterQuery = None,
) -> RollupOut:
    """The units directly under ``unit_id``: deadline, status, latest submission and figures (frozen, or live when
    not submitted), and the two sums: what was submitted, and the live figures of what is missing."""
    now = utcnow()
    if (year is None) != (quarter is None):
        raise BadRequest("give both year and quarter, or neither (the current quarter)")
    if year is None or quarter is None:
        year, quarter = statistics.current_quarter(now)
    rules = calendar.rules(session)
    found = rollup.rollup(
        session, caller.scope, unit_id, year, quarter, heartbeat_seconds=settings.heartbeat_seconds, now=now
    )
    return RollupOut(
        unit_id=found.parent.id,
        year=year,
        quarter=quarter,
        rows=[
            RollupRowOut(
                unit_id=row.unit.id,
                unit_name=row.unit.name,
                deadline=row.deadline,
                status=row.status,
                submission=_out(session, row.submission, rules) if row.submission is not None else None,
                live=row.live,
                figures=row.figures.to_json(),
            )
            for row in found.rows
        ],
        submitted=found.submitted.to_json() if found.submitted is not None else None,
        missing=found.missing.to_json() if found.missing is not None else None,
        names_exact=found.names_exact,
    )
