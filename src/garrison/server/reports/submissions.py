"""Submitting a unit's quarterly report: the figures frozen as they are reported, and its documents made from them.

- **When**: from the first day of the quarter's last month (Vietnam time). The deadline (regulations §8: before
  the 20th of that month) comes before the quarter ends, so waiting for the quarter's end would make every report
  late; a report submitted before the end covers the quarter up to the moment of submission (the document says
  when its figures were computed). A correction after the quarter ended completes it.
- **Who**: an administrator of the unit or of a unit above it (``units.get`` in the caller's writable scope);
  auditors read only.
- **What**: ``statistics.compute`` of the unit's subtree for the whole quarter, every malware name kept (the
  documents list the top ten; the roll-up needs them all to count distinct names), stored with ``to_json`` in
  ``figures``; the document's fields (:class:`~garrison.server.reports.quarterly.ReportInfo`, the unit's name and
  code and the parent's name filled in) in ``info``. Both are frozen: later detections, triage, renamed units or
  enrolled computers do not change a submitted report. Its documents are rendered from them
  (``Statistics.from_json``), never from live data.
- **Corrections**: a new submission of the same unit and quarter is the next version; earlier ones stay.

Lateness is judged against the deadline the unit's reporting line gives now (``reports.calendar``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.deps import Caller
from garrison.server.errors import Conflict, Forbidden, NotFound
from garrison.server.reports import calendar, quarterly, statistics
from garrison.server.reports.exports import Language
from garrison.server.reports.models import ReportSubmission
from garrison.server.units import service as units
from garrison.server.units.models import Unit

#: Malware names kept in a snapshot: all of them in practice (the documents print the top ``TOP_NAMES``).
SNAPSHOT_NAMES = 100_000

Status = Literal["submitted", "late", "not_yet", "overdue"]
"""``submitted`` on time; ``late``: submitted after the deadline; ``not_yet``: before the deadline; ``overdue``:
the deadline passed without a report."""


@dataclass(frozen=True, slots=True)
class DocumentFields:
    """What the submitter writes on the document. None: the default (the unit's code after ``BC-``, the parent
    unit's name as the governing agency, today in Vietnam as the date)."""

    number: str = ""
    symbol: str | None = None
    recipient: str = ""
    place: str = ""
    issued: date | None = None
    signer_title: str = ""
    signer_name: str = ""
    parent_agency: str | None = None


def _info(session: Session, unit: Unit, fields: DocumentFields, now: datetime) -> dict[str, Any]:
    """The document's fields as stored: everything :class:`ReportInfo` needs besides the quarter, defaults filled
    in, so that a renamed unit does not change what was submitted."""
    return {
        "agency": unit.name,
        "parent_agency": quarterly.parent_name(session, unit) if fields.parent_agency is None else fields.parent_agency,
        "number": fields.number,
        "symbol": (unit.code or "") if fields.symbol is None else fields.symbol,
        "recipient": fields.recipient,
        "place": fields.place,
        "issued": (fields.issued or now.astimezone(statistics.ZONE).date()).isoformat(),
        "signer_title": fields.signer_title,
        "signer_name": fields.signer_name,
    }


def report_info(submission: ReportSubmission) -> quarterly.ReportInfo:
    """The document fields of ``submission``; a missing or odd field (a federated server's) is left blank."""
    info = submission.info or {}
    issued = info.get("issued")

    def text(key: str) -> str:
        value = info.get(key)
        return value if isinstance(value, str) else ""

    return quarterly.ReportInfo(
        year=submission.year,
        quarter=submission.quarter,
        agency=text("agency"),
        parent_agency=text("parent_agency"),
        number=text("number"),
        symbol=text("symbol"),
        recipient=text("recipient"),
        place=text("place"),
        issued=date.fromisoformat(issued) if isinstance(issued, str) and issued else None,
        signer_title=text("signer_title"),
        signer_name=text("signer_name"),
        units=tuple(line for item in _list(info.get("units")) if (line := quarterly.UnitLine.from_json(item))),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def check_open(year: int, quarter: int, now: datetime) -> None:
    """:class:`Conflict` before the quarter's reports may be submitted."""
    opens = calendar.opens_at(year, quarter)
    if now < opens:
        day = opens.astimezone(statistics.ZONE).date()
        raise Conflict(f"reports of quarter {quarter} {year} can be submitted from {day.isoformat()}")


def submit(
    session: Session,
    caller: Caller,
    unit_id: int,
    year: int,
    quarter: int,
    info: DocumentFields,
    *,
    heartbeat_seconds: float = 60.0,
    now: datetime | None = None,
    unit_lines: Sequence[quarterly.UnitLine] = (),
) -> ReportSubmission:
    """Submit ``unit_id``'s report of ``quarter`` of ``year``: its figures now, frozen; the next version.
    ``unit_lines``: the units under it as they stand now (``rollup.document_lines``), kept for its document."""
    if not caller.scope.writable:
        raise Forbidden("read-only access")
    unit = units.get(session, caller.scope, unit_id)
    now = now or utcnow()
    check_open(year, quarter, now)
    start, end = statistics.quarter_bounds(year, quarter)
    figures = statistics.compute(
        session, caller.scope, unit.id, start, end, heartbeat_seconds=heartbeat_seconds, now=now, top=SNAPSHOT_NAMES
    )
    previous = session.scalar(
        select(func.max(ReportSubmission.version)).where(
            ReportSubmission.unit_id == unit.id, ReportSubmission.year == year, ReportSubmission.quarter == quarter
        )
    )
    submission = ReportSubmission(
        unit_id=unit.id,
        year=year,
        quarter=quarter,
        version=(previous or 0) + 1,
        figures=figures.to_json(),
        info={**_info(session, unit, info, now), "units": [line.to_json() for line in unit_lines]},
        submitted_at=now,
        submitted_by=caller.user.id,
        submitted_by_name=caller.user.username,
        received_from=None,
    )
    try:
        with session.begin_nested():  # two submissions at once: the second is told, not a server error
            session.add(submission)
    except IntegrityError:
        raise Conflict("another submission of this report was saved at the same time; reload and check") from None
    due = calendar.deadline(session, unit.id, year, quarter)
    record(
        session, caller.actor, "report.submit", "report_submission", submission.id, unit_id=unit.id, year=year,
        quarter=quarter, version=submission.version, deadline=due.isoformat(), late=now >= due,
    )  # fmt: skip
    return submission


def get(session: Session, scope: Scope, submission_id: int) -> ReportSubmission:
    """A submission of a unit inside ``scope`` (404 otherwise)."""
    submission = session.get(ReportSubmission, submission_id)
    if submission is None:
        raise NotFound(f"no submission {submission_id}")
    unit = session.get(Unit, submission.unit_id)
    if unit is None or not scope.contains(unit.path):
        raise NotFound(f"no submission {submission_id}")
    return submission


def listing(
    session: Session,
    scope: Scope,
    *,
    unit_id: int | None = None,
    year: int | None = None,
    quarter: int | None = None,
    limit: int = 500,
) -> list[ReportSubmission]:
    """Submissions of the units in ``scope`` (or of one unit of it), newest first."""
    query = select(ReportSubmission)
    if unit_id is not None:
        query = query.where(ReportSubmission.unit_id == units.get(session, scope, unit_id).id)
    else:
        query = units.within(query, scope, ReportSubmission.unit_id)
    if year is not None:
        query = query.where(ReportSubmission.year == year)
    if quarter is not None:
        query = query.where(ReportSubmission.quarter == quarter)
    order = (ReportSubmission.submitted_at.desc(), ReportSubmission.id.desc())
    return list(session.scalars(query.order_by(*order).limit(limit)))


def latest(session: Session, unit_ids: list[int], year: int, quarter: int) -> dict[int, ReportSubmission]:
    """The latest version of each unit's report of the quarter (submitted here or received by federation)."""
    if not unit_ids:
        return {}
    found: dict[int, ReportSubmission] = {}
    query = select(ReportSubmission).where(
        ReportSubmission.unit_id.in_(unit_ids), ReportSubmission.year == year, ReportSubmission.quarter == quarter
    )
    for submission in session.scalars(query.order_by(ReportSubmission.version)):
        found[submission.unit_id] = submission
    return found


def submitted_at(submission: ReportSubmission) -> datetime:
    """When it was submitted, in UTC (SQLite gives stored times back without their zone)."""
    moment = submission.submitted_at
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def status(submission: ReportSubmission | None, due: datetime, now: datetime) -> Status:
    if submission is None:
        return "overdue" if now >= due else "not_yet"
    return "late" if submitted_at(submission) >= due else "submitted"


def frozen(submission: ReportSubmission) -> statistics.Statistics:
    """The figures as submitted."""
    return statistics.Statistics.from_json(submission.figures)


def documents(
    session: Session, actor: Actor, submission: ReportSubmission, file_format: str, language: Language
) -> tuple[bytes, str, str]:
    """(body, media type, file name) of a submission's document, made from its frozen figures and fields;
    recorded in the audit log."""
    if file_format not in quarterly.FORMATS:
        raise NotFound(f"no {file_format} document")
    build, media_type = quarterly.FORMATS[file_format]
    stats = frozen(submission)
    shown = dataclasses.replace(stats, by_name=stats.by_name[: statistics.TOP_NAMES])
    body = build(shown, report_info(submission), language)
    record(
        session, actor, "report.submission_download", "report_submission", submission.id,
        unit_id=submission.unit_id, format=file_format, language=language, version=submission.version,
    )  # fmt: skip
    name = (
        f"garrison-bao-cao-q{submission.quarter}-{submission.year}-unit{submission.unit_id}"
        f"-v{submission.version}.{file_format}"
    )
    return body, media_type, name
