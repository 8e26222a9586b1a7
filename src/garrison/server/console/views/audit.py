"""Console pages of the audit log: the list with filters (action, dates) and paging, and its CSV export.

``audit.service.events`` has no filters yet, so the query is built here, limited by the same scope rule
(``units.service.within``): the whole log for a province administrator, else the events about units of the
viewer's subtree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any, cast
from urllib.parse import urlencode

from fastapi import Depends, Request, Response
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from garrison.server.audit.models import AuditEvent
from garrison.server.auth.scope import Scope
from garrison.server.console import csvfile, i18n, sorting
from garrison.server.console.i18n import N_
from garrison.server.console.web import ConsoleDb, CurrentViewer, console_router, gettext, render
from garrison.server.units.service import subtree, within

router = console_router()

PAGE_SIZE = 50
MAX_EXPORT = 100_000
#: The sortable columns (``sort``): newest first by default; the action (by its code, which groups the actions
#: of one kind: ``auth.…``, ``units.…``), who did it.
SORTABLE = sorting.Sortable(
    ("time", "action", "who"), "time", default_descending=True, descending_first=frozenset({"time"})
)
Chosen = Annotated[sorting.Sort, Depends(SORTABLE.chosen)]
_SORT_COLUMNS: dict[str, list[sorting.Orderable]] = {
    "time": [AuditEvent.at],
    "action": [AuditEvent.action],
    "who": [AuditEvent.actor_name],
}


def order_of(sort: sorting.Sort) -> list[ColumnElement[Any]]:
    return sorting.order_by(sort, _SORT_COLUMNS, [AuditEvent.id])


@dataclass(frozen=True, slots=True)
class Filters:
    action: str = ""
    since: date | None = None
    until: date | None = None

    def query_string(self) -> str:
        parts = {"action": self.action, "since": self.since, "until": self.until}
        return urlencode({k: str(v) for k, v in parts.items() if v})


def _where(query: Select[Any], scope: Scope, filters: Filters) -> Select[Any]:
    # Events without a unit (logins of province administrators) are outside every unit's subtree.
    query = within(query, scope, cast("InstrumentedAttribute[int]", AuditEvent.unit_id))
    if filters.action:
        query = query.where(AuditEvent.action == filters.action)
    if filters.since:
        query = query.where(AuditEvent.at >= i18n.day_start(filters.since))
    if filters.until:
        query = query.where(AuditEvent.at < i18n.day_start(filters.until + timedelta(days=1)))
    return query


def events(
    session: Session,
    scope: Scope,
    filters: Filters,
    *,
    limit: int,
    offset: int = 0,
    order: Sequence[ColumnElement[Any]] = (),
) -> Sequence[AuditEvent]:
    """The events of ``scope`` matching ``filters``, newest first unless ``order`` says otherwise."""
    query = _where(select(AuditEvent), scope, filters).order_by(*(order or [AuditEvent.id.desc()]))
    return session.scalars(query.limit(limit).offset(offset)).all()


def count(session: Session, scope: Scope, filters: Filters) -> int:
    return session.scalar(_where(select(func.count(AuditEvent.id)), scope, filters)) or 0


def actions(session: Session, scope: Scope) -> list[str]:
    """The actions to filter by: the known ones and any other found in the viewer's log."""
    found = session.scalars(_where(select(AuditEvent.action).distinct(), scope, Filters())).all()
    return sorted(set(i18n.ACTION_LABELS) | set(found))


def target_of(event: AuditEvent) -> str:
    """What the event is about, in a few words: a unit's or a user's name when the event recorded it."""
    details = event.details or {}
    name = details.get("name") or details.get("username")
    if event.action.startswith("auth."):
        return ""
    if name:
        return str(name)
    return f"#{event.target_id}" if event.target_id else ""


DETAIL_LABELS = {
    "parent_id": N_("Belongs to"),
    "role": N_("Role"),
    "changes": N_("Changes"),
    "name": N_("Name"),
    "kind": N_("Kind"),
    "code": N_("Code"),
    "declared_servers": N_("Servers"),
    "declared_workstations": N_("Workstations"),
    "declared_other": N_("Other endpoints"),
    "days": N_("Valid for (days)"),
}


def details_of(details: dict[str, Any], _: i18n.Gettext, unit_names: dict[int, str]) -> str:
    """An event's details in words: labels instead of field names, unit names instead of numbers."""
    parts = []
    for key, value in details.items():
        if value is None:
            continue
        if key == "changes" and isinstance(value, dict):
            shown = details_of(value, _, unit_names)
        elif key == "parent_id" and isinstance(value, int):
            shown = unit_names.get(value, f"#{value}")
        elif key == "role":
            shown = i18n.label(i18n.ROLE_LABELS, str(value), _)
        elif key == "kind":
            shown = i18n.label(i18n.KIND_LABELS, str(value), _)
        else:
            shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
        label = _(DETAIL_LABELS[key]) if key in DETAIL_LABELS else key
        parts.append(f"{label}: {shown}")
    return "; ".join(parts)


def describer(session: Session, scope: Scope, _: i18n.Gettext) -> Callable[[AuditEvent], str]:
    """``details_of`` for the events of one page, knowing the names of the units in ``scope``."""
    names = {unit.id: unit.name for unit in subtree(session, scope)}

    def describe(event: AuditEvent) -> str:
        shown = {k: v for k, v in (event.details or {}).items() if k not in {"name", "username"}}
        return details_of(shown, _, names)

    return describe


def _filters(action: str, since: str, until: str) -> Filters:
    return Filters(action.strip()[:64], i18n.iso_day(since), i18n.iso_day(until))


@router.get("/audit")
def audit_log(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    chosen: Chosen,
    action: str = "",
    since: str = "",
    until: str = "",
    page: int = 1,
) -> Response:
    filters = _filters(action, since, until)
    order = chosen
    total = count(session, viewer.caller.scope, filters)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    offset = (page - 1) * PAGE_SIZE
    shown = events(session, viewer.caller.scope, filters, limit=PAGE_SIZE, offset=offset, order=order_of(order))
    context = {
        "events": shown,
        "filters": filters,
        "sort": order,
        "actions": actions(session, viewer.caller.scope),
        "total": total,
        "page": page,
        "pages": pages,
        "first": (page - 1) * PAGE_SIZE + 1 if total else 0,
        "last": (page - 1) * PAGE_SIZE + len(shown),
        "target_of": target_of,
        "describe": describer(session, viewer.caller.scope, gettext(request)),
    }
    return render(request, "audit/list.html", context, viewer=viewer)


@router.get("/audit.csv")
def audit_csv(
    request: Request,
    session: ConsoleDb,
    viewer: CurrentViewer,
    chosen: Chosen,
    action: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    _ = gettext(request)
    filters = _filters(action, since, until)
    order = order_of(chosen)
    header = [_("Time"), _("Who"), _("What"), _("Action code"), _("About"), _("From address"), _("Details")]
    describe = describer(session, viewer.caller.scope, _)
    lines = []
    for event in events(session, viewer.caller.scope, filters, limit=MAX_EXPORT, order=order):
        label = i18n.label(i18n.ACTION_LABELS, event.action, _)
        row = [i18n.moment(event.at), event.actor_name, label, event.action, target_of(event), event.address]
        lines.append([*row, describe(event)])
    return csvfile.download("audit", header, lines)
