"""Console pages of detections: the list (filtered by review state and age, 50 a page) and its CSV export, one
detection's page with its hashes and the archives it was found in, and the review buttons (resolved, false
alarm).

Detections are read and reviewed through ``detections.service`` with the viewer's scope, like the API.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.server.agents.models import Agent
from garrison.server.console import i18n
from garrison.server.console.views.audit import _cell
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
from garrison.server.units.models import Unit

router = console_router()

PAGE_SIZE = 50
MAX_EXPORT = 100_000
#: The "found in the last … days" filters offered (the overview links to 30).
AGES = (1, 7, 30, 90)


@dataclass(frozen=True, slots=True)
class Filters:
    triage: Triage | None = None
    days: int | None = None

    def query_string(self) -> str:
        parts: dict[str, Any] = {"triage": self.triage.value if self.triage else "", "days": self.days}
        return urlencode({k: str(v) for k, v in parts.items() if v})

    def since(self) -> datetime | None:
        return utcnow() - timedelta(days=self.days) if self.days else None


def _filters(triage: str, days: str) -> Filters:
    return Filters(
        Triage(triage) if triage in {t.value for t in Triage} else None,
        int(days) if days in {str(a) for a in AGES} else None,
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
    triage: str = "",
    days: str = "",
    page: int = 1,
    done: str = "",
) -> Response:
    _ = gettext(request)
    filters = _filters(triage, days)
    scope = viewer.caller.scope
    total = service.count(session, scope, triage=filters.triage, since=filters.since())
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    shown = service.search(
        session, scope, triage=filters.triage, since=filters.since(), limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    hosts, names = _places(session, shown)
    context = {
        "detections": shown,
        "hosts": hosts,
        "unit_names": names,
        "filters": filters,
        "triages": [t.value for t in Triage],
        "ages": AGES,
        "total": total,
        "page": page,
        "pages": pages,
        "notice": _("The review was saved.") if done == "triaged" else "",
    }
    return render(request, "detections/list.html", context, viewer=viewer)


@router.get("/detections.csv")
def export(request: Request, session: ConsoleDb, viewer: CurrentViewer, triage: str = "", days: str = "") -> Response:
    _ = gettext(request)
    filters = _filters(triage, days)
    rows = service.search(session, viewer.caller.scope, triage=filters.triage, since=filters.since(), limit=MAX_EXPORT)
    hosts, names = _places(session, rows)
    buffer = io.StringIO()
    buffer.write("\ufeff")  # so that Excel reads the Vietnamese text as UTF-8
    writer = csv.writer(buffer)
    header = [_("Time"), _("Computer"), _("Unit"), _("File"), _("Inside archives"), _("Threat")]
    writer.writerow([*header, _("Action taken"), _("Review"), "SHA-256", "ID"])
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
        writer.writerow([_cell(v) for v in values])
    filename = f"garrison-detections-{datetime.now(i18n.DISPLAY_ZONE):%Y%m%d-%H%M}.csv"
    return Response(
        buffer.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


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
