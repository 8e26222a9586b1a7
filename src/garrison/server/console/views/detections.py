"""Console pages of detections: the list (filtered by review state, age, days, threat name, unit subtree and what
became of the detection, 50 a page) and its CSV export, one detection's page with its hashes and the archives it
was found in, and the review buttons (resolved, false alarm).

Detections are read and reviewed through ``detections.service`` with the viewer's scope, like the API; the unit
filter narrows that scope to a unit's subtree (404 outside it). Days (``from``, ``to``) are Vietnam's calendar days,
like the times the console shows. The outcomes (``outcome``) are the statistics' definitions
(``detections.service.OUTCOMES``), so that every figure of the Statistics page opens the list of what it counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Query, Request, Response
from sqlalchemy import ColumnElement, case, select
from sqlalchemy.orm import Session

from garrison.server.agents.models import Agent
from garrison.server.auth.scope import Scope
from garrison.server.console import csvfile, i18n, sorting
from garrison.server.console.i18n import N_
from garrison.server.console.views.quarantine import of_detection
from garrison.server.console.views.tasks import labels as task_labels
from garrison.server.console.views.units import tree_rows
from garrison.server.console.web import (
    ConsoleDb,
    CurrentViewer,
    WritingViewer,
    console_router,
    gettext,
    redirect,
    render,
)
from garrison.server.db import utcnow
from garrison.server.detections import service
from garrison.server.detections.models import Detection, Triage
from garrison.server.errors import BadRequest
from garrison.server.units import service as units
from garrison.server.units.models import Unit

router = console_router()

PAGE_SIZE = 50
MAX_EXPORT = 100_000
#: The "found in the last … days" filters offered (the overview links to 30).
AGES = (1, 7, 30, 90)
#: The sortable columns (``sort``): newest first by default; the threat's name, the computer, the review.
SORTABLE = sorting.Sortable(
    ("time", "name", "computer", "triage"), "time", default_descending=True, descending_first=frozenset({"time"})
)
Chosen = Annotated[sorting.Sort, Depends(SORTABLE.chosen)]
#: What became of a detection, as the list filters it (the Statistics page's words for the same figures).
OUTCOME_LABELS = {
    "removed": N_("Removed by Garrison"),
    "quarantined": N_("Put in quarantine"),
    "deleted": N_("Deleted by Garrison"),
    "failed": N_("Garrison could not remove the file"),
    "resolved": N_("Dealt with by a person"),
    "outstanding": N_("Still to deal with"),
}
_SORT_COLUMNS: dict[str, list[sorting.Orderable]] = {
    "time": [Detection.occurred_at],
    "name": [Detection.name],
    "computer": [select(Agent.hostname).where(Agent.id == Detection.agent_id).scalar_subquery()],
    # In the order of the review: to review, resolved, false alarm.
    "triage": [case({t: i for i, t in enumerate(Triage)}, value=Detection.triage, else_=len(Triage))],
}


def order_of(sort: sorting.Sort) -> list[ColumnElement[Any]]:
    return sorting.order_by(sort, _SORT_COLUMNS, [Detection.id])


@dataclass(frozen=True, slots=True)
class Filters:
    triage: Triage | None = None
    days: int | None = None
    first_day: date | None = None  # ``from``: found on this day (Vietnam's time) or later
    last_day: date | None = None  # ``to``: found on this day or earlier
    name: str = ""  # exactly this threat name
    unit: int | None = None  # only this unit and the units under it
    outcome: str = ""  # one of detections.service.OUTCOMES

    def query_string(self) -> str:
        parts: dict[str, Any] = {
            "triage": self.triage.value if self.triage else "",
            "days": self.days,
            "from": self.first_day,
            "to": self.last_day,
            "name": self.name,
            "unit": self.unit,
            "outcome": self.outcome,
        }
        return urlencode({k: str(v) for k, v in parts.items() if v})

    def since(self) -> datetime | None:
        """The earliest time asked for: the start of ``from`` or ``days`` ago, whichever is later."""
        bounds = [i18n.day_start(self.first_day)] if self.first_day else []
        if self.days:
            bounds.append(utcnow() - timedelta(days=self.days))
        return max(bounds) if bounds else None

    def until(self) -> datetime | None:
        """The end (excluded) of ``to``: the start of the next day."""
        return i18n.day_start(self.last_day + timedelta(days=1)) if self.last_day else None

    def search(self) -> dict[str, Any]:
        """The filters as ``detections.service`` arguments."""
        return {
            "triage": self.triage,
            "since": self.since(),
            "until": self.until(),
            "name": self.name or None,
            "outcome": self.outcome or None,
        }

    def scope(self, session: Session, scope: Scope) -> Scope:
        """``scope`` narrowed to the chosen unit's subtree (404 when the unit is outside it)."""
        return units.narrow(session, scope, self.unit)


def _filters(
    triage: str, days: str, first_day: str = "", last_day: str = "", name: str = "", unit: str = "", outcome: str = ""
) -> Filters:
    return Filters(
        Triage(triage) if triage in {t.value for t in Triage} else None,
        int(days) if days in {str(a) for a in AGES} else None,
        i18n.iso_day(first_day),
        i18n.iso_day(last_day),
        name.strip()[:255],
        int(unit) if unit.isdigit() and len(unit) < 12 else None,
        outcome if outcome in service.OUTCOMES else "",
    )


def _places(session: Session, rows: Sequence[Detection]) -> tuple[dict[str, str], dict[int, str]]:
    """Host names of the detections' agents and names of their units (all inside the viewer's scope)."""
    agent_ids = {d.agent_id for d in rows}
    unit_ids = {d.unit_id for d in rows}
    hosts = {i: h for i, h in session.execute(select(Agent.id, Agent.hostname).where(Agent.id.in_(agent_ids)))}
    names = {i: n for i, n in session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(unit_ids)))}
    return hosts, names


@router.get("/detections")
def list_page(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    chosen: Chosen,
    triage: str = "",
    days: str = "",
    first_day: Annotated[str, Query(alias="from")] = "",
    last_day: Annotated[str, Query(alias="to")] = "",
    name: str = "",
    unit: str = "",
    outcome: str = "",
    page: int = 1,
    done: str = "",
) -> Response:
    _ = gettext(request)
    filters = _filters(triage, days, first_day, last_day, name, unit, outcome)
    order = chosen
    scope = filters.scope(session, viewer.caller.scope)
    total = service.count(session, scope, **filters.search())
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    offset = (page - 1) * PAGE_SIZE
    shown = service.search(session, scope, **filters.search(), limit=PAGE_SIZE, offset=offset, order=order_of(order))
    hosts, names = _places(session, shown)
    context = {
        "detections": shown,
        "hosts": hosts,
        "unit_names": names,
        "filters": filters,
        "sort": order,
        "triages": [t.value for t in Triage],
        "ages": AGES,
        "units": tree_rows(units.subtree(session, viewer.caller.scope)),
        "outcomes": OUTCOME_LABELS,
        "total": total,
        "page": page,
        "pages": pages,
        "notice": _("The review was saved.") if done == "triaged" else "",
    }
    return render(request, "detections/list.html", context, viewer=viewer)


@router.get("/detections.csv")
def export(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    chosen: Chosen,
    triage: str = "",
    days: str = "",
    first_day: Annotated[str, Query(alias="from")] = "",
    last_day: Annotated[str, Query(alias="to")] = "",
    name: str = "",
    unit: str = "",
    outcome: str = "",
) -> Response:
    _ = gettext(request)
    filters = _filters(triage, days, first_day, last_day, name, unit, outcome)
    order = order_of(chosen)
    scope = filters.scope(session, viewer.caller.scope)
    rows = service.search(session, scope, **filters.search(), limit=MAX_EXPORT, order=order)
    hosts, names = _places(session, rows)
    header = [_("Time"), _("Computer"), _("Unit"), _("File"), _("Inside archives"), _("Threat")]
    header += [_("Action taken"), _("Review"), "SHA-256", "ID"]
    lines = []
    for d in rows:
        values = [
            i18n.moment(d.occurred_at),
            hosts.get(d.agent_id, ""),
            names.get(d.unit_id, ""),
            d.path,
            " › ".join(str(part) for part in d.chain or []),
            d.name,
            i18n.label(i18n.DETECTION_ACTION_LABELS, d.action, _),
            i18n.label(i18n.TRIAGE_LABELS, d.triage.value, _),
            d.sha256,
            d.id,
        ]
        lines.append(values)
    return csvfile.download("detections", header, lines)


@router.get("/detections/{detection_id}")
def detail(request: Request, detection_id: str, session: ConsoleDb, viewer: CurrentViewer, done: str = "") -> Response:
    _ = gettext(request)
    detection = service.get(session, viewer.caller.scope, detection_id)
    hosts, names = _places(session, [detection])
    context = {
        "d": detection,
        "host": hosts.get(detection.agent_id, ""),
        "unit_name": names.get(detection.unit_id, ""),
        "notice": _("The review was saved.") if done == "triaged" else "",
        "allowed_notice": _("The file is now allowed on every computer.") if done == "allowed" else "",
        "quarantined": of_detection(session, viewer.caller.scope, detection.id),
        **task_labels(request),
    }
    return render(request, "detections/detail.html", context, viewer=viewer)


@router.post("/detections/{detection_id}/triage")
def triage(
    request: Request,
    detection_id: str,
    session: ConsoleDb,
    viewer: WritingViewer,
    state: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    if state not in {t.value for t in Triage}:
        raise BadRequest("the form is not valid")
    service.set_triage(session, viewer.caller.scope, viewer.caller.actor, detection_id, Triage(state))
    return redirect(f"/detections/{detection_id}?done=triaged")
