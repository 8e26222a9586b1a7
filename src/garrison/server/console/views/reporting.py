"""The reporting page: a quarter's deadlines, who has submitted, the Submit form and the deadline settings.

``/reporting?unit=&year=&quarter=`` shows, for a unit of the reader's subtree (default: its top) and a quarter
(default: the current one): the unit's own deadline and days left, its submissions (every version, with their
documents, made from the frozen figures by the REST API), and the units directly under it with their status, as
``reports.rollup`` gives it. Administrators of the unit (or above it) submit its report and set the deadline rule
of the units under it; auditors read. Everything goes through the reporting services with the viewer's scope, so
a unit outside it is a 404 here as in the API.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import Form, Request, Response
from sqlalchemy.orm import Session

from garrison.server.console import i18n
from garrison.server.console.i18n import N_
from garrison.server.console.views.units import tree_rows
from garrison.server.console.web import (
    ConsoleDb,
    CurrentViewer,
    Viewer,
    WritingViewer,
    console_router,
    gettext,
    language,
    redirect,
    render,
)
from garrison.server.db import utcnow
from garrison.server.deps import Settings
from garrison.server.errors import BadRequest, NotFound, ServerError
from garrison.server.reports import calendar, pdf, quarterly, rollup, statistics, submissions
from garrison.server.units import service as units
from garrison.server.units.models import Unit
from garrison.server.wire import ID_MAX

router = console_router()

YEARS_SHOWN = 4
TEXT_MAX = 200
STATUS_LABELS = {
    "submitted": N_("Submitted"),
    "late": N_("Submitted late"),
    "not_yet": N_("Not yet"),
    "overdue": N_("Late, not submitted"),
}
# The console's existing state colours: green done, orange late or waiting, red overdue, grey not due yet.
STATUS_CLASSES = {"submitted": "online", "late": "new", "not_yet": "false_positive", "overdue": "bad"}
DONE = {
    "submitted": N_("The report was submitted. Its figures are now kept as they are."),
    "line": N_("The deadline settings were saved."),
    "cleared": N_("The units below now follow the deadline settings of the unit above."),
}


def _choice(session: Session, viewer: Viewer, unit: str, year: str, quarter: str) -> tuple[Unit | None, int, int]:
    now_year, now_quarter = statistics.current_quarter()
    chosen_year = int(year) if year.isdigit() and 2000 <= int(year) <= now_year + 1 else now_year
    chosen_quarter = int(quarter) if quarter.isdigit() and 1 <= int(quarter) <= 4 else now_quarter
    scope = viewer.caller.scope
    if unit.strip():
        if not unit.strip().isdigit() or not 1 <= int(unit) <= ID_MAX:
            raise NotFound("no such unit")
        return units.get(session, scope, int(unit)), chosen_year, chosen_quarter
    return quarterly.report_unit(session, scope, None), chosen_year, chosen_quarter


def _page(
    request: Request,
    session: Session,
    viewer: Viewer,
    settings: Settings,
    unit: Unit | None,
    year: int,
    quarter: int,
    *,
    notice: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    scope = viewer.caller.scope
    now = utcnow()
    now_year, _quarter = statistics.current_quarter(now)
    context: dict[str, object] = {
        "units": tree_rows(units.subtree(session, scope)),
        "unit": unit,
        "year": year,
        "quarter": quarter,
        "years": sorted({*range(now_year - YEARS_SHOWN + 1, now_year + 1), year}, reverse=True),
        "notice": notice,
        "error": error,
        "lang": language(request),
        "status_labels": STATUS_LABELS,
        "status_classes": STATUS_CLASSES,
    }
    if unit is None:
        return render(request, "reporting/page.html", context, viewer=viewer, status_code=status_code)
    rules = calendar.rules(session)
    due = calendar.deadline_at(calendar.rule_for(unit.path, rules), year, quarter)
    mine = submissions.listing(session, scope, unit_id=unit.id, year=year, quarter=quarter)
    found = rollup.rollup(session, scope, unit.id, year, quarter, heartbeat_seconds=settings.heartbeat_seconds, now=now)
    line = calendar.line_of(unit.path, rules)
    context.update(
        {
            "deadline": due,
            # Due *before* the deadline day: the last day to submit is the day before it.
            "last_day": last_day(due),
            "last_day_of": last_day,
            "days_left": calendar.days_left(due, now),
            "status": submissions.status(mine[0] if mine else None, due, now),
            "submissions": mine,
            "opens": calendar.opens_at(year, quarter),
            "is_open": now >= calendar.opens_at(year, quarter),
            "rollup": found,
            "line": line,
            "line_own": line.unit_id == unit.id,
            "line_from": session.get(Unit, line.unit_id) if line.unit_id not in (None, unit.id) else None,
            "defaults": {"symbol": unit.code or "", "parent_agency": quarterly.parent_name(session, unit)},
            # The units below should report before this unit's own deadline, so that it can sum their reports.
            "own_day": calendar.rule_for(unit.path, rules).deadline_day,
            "formats": [f for f in ("docx", "pdf", "xlsx") if f != "pdf" or pdf.converter() is not None],
        }
    )
    return render(request, "reporting/page.html", context, viewer=viewer, status_code=status_code)


def last_day(due: datetime) -> str:
    """The last day to submit (Vietnam's), shown for a deadline: reports are due *before* the deadline's day."""
    return (due.astimezone(statistics.ZONE) - timedelta(days=1)).strftime("%d/%m/%Y")


@router.get("/reporting")
def reporting_page(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    settings: Settings,
    unit: str = "",
    year: str = "",
    quarter: str = "",
    done: str = "",
) -> Response:
    _ = gettext(request)
    chosen, chosen_year, chosen_quarter = _choice(session, viewer, unit, year, quarter)
    notice = _(DONE[done]) if done in DONE else ""
    return _page(request, session, viewer, settings, chosen, chosen_year, chosen_quarter, notice=notice)


def _back(unit_id: int, year: int, quarter: int, done: str) -> Response:
    return redirect(f"/reporting?unit={unit_id}&year={year}&quarter={quarter}&done={done}")


Short = Annotated[str, Form(max_length=TEXT_MAX)]


@router.post("/reporting/submit")
def submit(
    request: Request,
    session: ConsoleDb,
    viewer: WritingViewer,
    settings: Settings,
    unit: Annotated[int, Form(ge=1, le=ID_MAX)],
    year: Annotated[int, Form(ge=2000, le=2100)],
    quarter: Annotated[int, Form(ge=1, le=4)],
    number: Short = "",
    symbol: Annotated[str, Form(max_length=64)] = "",
    recipient: Short = "",
    place: Short = "",
    issued: Annotated[str, Form(max_length=10)] = "",
    signer_title: Short = "",
    signer_name: Short = "",
    parent_agency: Short = "",
) -> Response:
    _ = gettext(request)
    chosen = units.get(session, viewer.caller.scope, unit)
    try:
        try:
            issued_day = date.fromisoformat(issued) if issued.strip() else None
        except ValueError:
            raise BadRequest("the date of the document is not a date") from None
        fields = submissions.DocumentFields(
            number=number.strip(), symbol=symbol.strip(), recipient=recipient.strip(), place=place.strip(),
            issued=issued_day, signer_title=signer_title.strip(), signer_name=signer_name.strip(),
            parent_agency=parent_agency.strip(),
        )  # fmt: skip
        beat = settings.heartbeat_seconds
        lines = rollup.document_lines(session, viewer.caller.scope, chosen.id, year, quarter, heartbeat_seconds=beat)
        submissions.submit(
            session, viewer.caller, chosen.id, year, quarter, fields, heartbeat_seconds=beat, unit_lines=lines
        )
    except ServerError as refused:
        session.rollback()
        error = i18n.explain_error(refused, _)
        return _page(request, session, viewer, settings, chosen, year, quarter, error=error, status_code=refused.status)
    return _back(chosen.id, year, quarter, "submitted")


_DAYS = re.compile(r"^[\d,;\s]*$")


@router.post("/reporting/line")
def save_line(
    request: Request,
    session: ConsoleDb,
    viewer: WritingViewer,
    settings: Settings,
    unit: Annotated[int, Form(ge=1, le=ID_MAX)],
    year: Annotated[int, Form(ge=2000, le=2100)],
    quarter: Annotated[int, Form(ge=1, le=4)],
    deadline_day: Annotated[str, Form(max_length=4)] = "",
    reminder_days: Annotated[str, Form(max_length=100)] = "",
    clear: Annotated[str, Form(max_length=4)] = "",
) -> Response:
    _ = gettext(request)
    chosen = units.get(session, viewer.caller.scope, unit)
    try:
        if clear:
            calendar.clear_line(session, viewer.caller.scope, viewer.caller.actor, chosen.id)
            return _back(chosen.id, year, quarter, "cleared")
        if not deadline_day.strip().isdigit() or not _DAYS.match(reminder_days):
            raise BadRequest("write the day as a number and the reminder days as numbers separated by commas")
        days = [int(d) for d in re.split(r"[,;\s]+", reminder_days.strip()) if d]
        calendar.set_line(session, viewer.caller.scope, viewer.caller.actor, chosen.id, int(deadline_day), days)
    except ServerError as refused:
        session.rollback()
        error = i18n.explain_error(refused, _)
        return _page(request, session, viewer, settings, chosen, year, quarter, error=error, status_code=refused.status)
    return _back(chosen.id, year, quarter, "line")
