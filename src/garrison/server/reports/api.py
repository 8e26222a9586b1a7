"""REST endpoints of the statistics: the figures as JSON (each with its evidence link), CSV and XLSX.

Any logged-in caller (auditors too) reads the figures of their own scope; a unit outside it answers 404. The
period is [start, end): ISO dates (the first moment of that day in Vietnam's time) or ISO times (without an
offset, Vietnam's time); without both, the current quarter.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from garrison.server.audit.service import record
from garrison.server.db import utcnow
from garrison.server.deps import CurrentCaller, DbSession, Settings
from garrison.server.errors import ERROR_RESPONSES, BadRequest, ErrorOut
from garrison.server.reports import exports, quarterly, rollup, statistics
from garrison.server.reports.schemas import StatisticsOut, statistics_out
from garrison.server.wire import ID_MAX

router = APIRouter(prefix="/api/v1", tags=["statistics"], responses=ERROR_RESPONSES)

UnitId = Annotated[int | None, Query(ge=1, le=ID_MAX, description="the subtree's root; default the caller's scope")]
Moment = Annotated[str | None, Query(max_length=40, description="ISO date or time; default the current quarter")]
Top = Annotated[int, Query(ge=1, le=100, description="how many malware names")]
Lang = Annotated[exports.Language, Query(description="language of the file's labels")]


def _moment(value: str, name: str) -> datetime:
    try:
        if len(value) == 10:
            return statistics.day_start(date.fromisoformat(value))
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO date (2026-01-01) or time (2026-01-01T08:00:00+07:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=statistics.ZONE)


def period(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """The requested period, or the current quarter when neither bound is given."""
    if start is None and end is None:
        return statistics.quarter_bounds(*statistics.current_quarter())
    if start is None or end is None:
        raise BadRequest("give both start and end, or neither (the current quarter)")
    return _moment(start, "start"), _moment(end, "end")


def _compute(
    session: DbSession, caller: CurrentCaller, settings: Settings, unit_id: int | None, start: str | None,
    end: str | None, top: int,
) -> statistics.Statistics:  # fmt: skip
    first, after = period(start, end)
    return statistics.compute(
        session, caller.scope, unit_id, first, after, heartbeat_seconds=settings.heartbeat_seconds, top=top
    )


@router.get("/statistics", response_model=StatisticsOut)
def get_statistics(
    session: DbSession,
    caller: CurrentCaller,
    settings: Settings,
    unit_id: UnitId = None,
    start: Moment = None,
    end: Moment = None,
    top: Top = statistics.TOP_NAMES,
) -> StatisticsOut:
    stats = _compute(session, caller, settings, unit_id, start, end, top)
    return statistics_out(stats, caller.scope.path)


def _filename(stats: statistics.Statistics, extension: str) -> str:
    first = stats.start.astimezone(statistics.ZONE)
    unit = f"-unit{stats.unit_id}" if stats.unit_id is not None else ""
    return f"garrison-statistics{unit}-{first:%Y%m%d}-{stats.end.astimezone(statistics.ZONE):%Y%m%d}.{extension}"


#: The exports of the figures: how each is made and its media type.
_EXPORTS = {"csv": (exports.to_csv, "text/csv; charset=utf-8"), "xlsx": (exports.to_xlsx, quarterly.XLSX_TYPE)}


@router.get("/statistics.{file_format}", response_class=Response)
def statistics_export(
    file_format: Literal["csv", "xlsx"],
    session: DbSession,
    caller: CurrentCaller,
    settings: Settings,
    unit_id: UnitId = None,
    start: Moment = None,
    end: Moment = None,
    top: Top = statistics.TOP_NAMES,
    lang: Lang = "vi",
) -> Response:
    """The figures as CSV (UTF-8 with a byte-order mark, formula-safe cells) or as an XLSX workbook."""
    stats = _compute(session, caller, settings, unit_id, start, end, top)
    make, media_type = _EXPORTS[file_format]
    return Response(
        make(stats, lang),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{_filename(stats, file_format)}"'},
    )


# -- the quarterly report (reports/quarterly.py) ----------------------------------------------------------------

ReportText = Annotated[str, Query(max_length=200, description="printed as is; empty: a dotted blank to fill in")]


@router.get(
    "/reports/quarterly.{file_format}",
    response_class=Response,
    responses={
        200: {"content": {t: {} for _, t in quarterly.FORMATS.values()}, "description": "the report, as a file"},
        503: {"model": ErrorOut, "description": "PDF asked for and LibreOffice is not installed on the server"},
    },
)
def quarterly_report(
    session: DbSession,
    caller: CurrentCaller,
    settings: Settings,
    file_format: Annotated[
        Literal["docx", "pdf", "xlsx"],
        Path(description="docx: the editable document; pdf: the same, printed; xlsx: its tables"),
    ],
    unit_id: UnitId = None,
    year: Annotated[int | None, Query(ge=2000, le=2100, description="default: the current quarter's")] = None,
    quarter: Annotated[int | None, Query(ge=1, le=4, description="default: the current quarter")] = None,
    lang: Lang = "vi",
    number: ReportText = "",
    symbol: Annotated[str | None, Query(max_length=64, description="after BC-; default the unit's code")] = None,
    recipient: ReportText = "",
    place: ReportText = "",
    issued: Annotated[date | None, Query(description="the date line; default today (Vietnam)")] = None,
    signer_title: ReportText = "",
    signer_name: ReportText = "",
    parent_agency: Annotated[str | None, Query(max_length=200, description="default the parent unit's name")] = None,
) -> Response:
    """The quarterly malware-infection report of a unit subtree (default: the caller's scope) as an editable DOCX
    in the shape of a Vietnamese administrative document, its PDF (LibreOffice on the server), or an XLSX of its
    tables. Open to every logged-in person
    within their scope (auditors too); a unit outside it is 404. Recorded in the audit log."""
    if (year is None) != (quarter is None):
        raise BadRequest("give both year and quarter, or neither (the current quarter)")
    if year is None or quarter is None:
        year, quarter = statistics.current_quarter()
    unit = quarterly.report_unit(session, caller.scope, unit_id)
    reporting_id = unit.id if unit is not None else None
    first, after = statistics.quarter_bounds(year, quarter)
    stats = statistics.compute(
        session,
        caller.scope,
        reporting_id,
        first,
        after,
        heartbeat_seconds=settings.heartbeat_seconds,
    )
    info = quarterly.ReportInfo(
        year=year,
        quarter=quarter,
        agency=unit.name if unit is not None else "",
        parent_agency=quarterly.parent_name(session, unit) if parent_agency is None else parent_agency,
        number=number,
        symbol=((unit.code or "") if unit is not None else "") if symbol is None else symbol,
        recipient=recipient,
        place=place,
        issued=issued or utcnow().astimezone(statistics.ZONE).date(),
        signer_title=signer_title,
        signer_name=signer_name,
        units=rollup.document_lines(
            session, caller.scope, reporting_id, year, quarter, heartbeat_seconds=settings.heartbeat_seconds
        ),
    )
    build, media_type = quarterly.FORMATS[file_format]
    body = build(stats, info, lang)
    record(
        session,
        caller.actor,
        "report.quarterly_export",
        "unit",
        unit.id if unit is not None else None,
        unit_id=unit.id if unit is not None else None,
        year=year,
        quarter=quarter,
        format=file_format,
        language=lang,
    )
    name = f"garrison-bao-cao-q{quarter}-{year}{f'-unit{unit.id}' if unit is not None else ''}.{file_format}"
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )
