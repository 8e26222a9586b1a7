"""The national authority page (``/sharing``): whether delivery is configured, the reports in the national
outbox with their attempts and the receiver's answers, "Send now" and "Retry".

The report covers the whole tree, so the page is for the province's administrators only (as the export and the
REST API are); everyone else gets the "not allowed" page. Everything goes through
``sharing.outbox``, as the REST API does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import Form, Query, Request, Response
from sqlalchemy.orm import Session

from garrison.server.console.i18n import N_
from garrison.server.console.views.updates import refusal_text
from garrison.server.console.web import (
    AdminViewer,
    AdminWriter,
    ConsoleDb,
    Viewer,
    console_router,
    gettext,
    redirect,
    render,
)
from garrison.server.db import utcnow
from garrison.server.deps import Settings
from garrison.server.errors import BadRequest, Conflict, ServerError
from garrison.server.reports import statistics
from garrison.server.settings import ServerSettings
from garrison.server.sharing import outbox
from garrison.server.sharing.models import DeliveryStatus
from garrison.server.wire import PathId

router = console_router()

PAGE_SIZE = 50
STATUS_LABELS = {
    "queued": N_("Waiting to be sent"),
    "sending": N_("Being sent"),
    "delivered": N_("Received by the authority"),
    "failed": N_("Not delivered"),
}
OUTCOME_LABELS = {
    "delivered": N_("Received by the authority"),
    "retry": N_("Will try again"),
    "failed": N_("Refused or given up"),
    "lost": N_("Interrupted (the server stopped)"),
}
DONE = {
    "queued": N_("The report was made and signed. It will be sent within a few minutes."),
    "retried": N_("The report will be sent again within a few minutes."),
}


def _problem(settings: ServerSettings) -> str:
    """What is missing before reports can be made, in the server's words (empty: nothing)."""
    try:
        outbox.require_configuration(settings)
    except Conflict as missing:
        return missing.message
    return ""


def _helpers(request: Request) -> dict[str, Any]:
    _ = gettext(request)
    return {
        "status_label": lambda code: _(STATUS_LABELS.get(code) or str(code)),
        "outcome_label": lambda code: _(OUTCOME_LABELS.get(code) or str(code)),
        "local_day": lambda moment: outbox.as_utc(moment).astimezone(statistics.ZONE).strftime("%d/%m/%Y %H:%M"),
    }


def _page(
    request: Request,
    session: Session,
    settings: ServerSettings,
    viewer: Viewer,
    *,
    status: str = "",
    done: str = "",
    error: str = "",
    values: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    _ = gettext(request)
    now = utcnow()
    chosen = DeliveryStatus(status) if status in STATUS_LABELS else None
    today = now.astimezone(statistics.ZONE).date()
    quarter_start = statistics.quarter_bounds(*statistics.current_quarter(now))[0].astimezone(statistics.ZONE)
    problem = _problem(settings)
    next_window = None
    if settings.national_send_hours > 0:
        next_window = outbox.window_end(now, settings.national_send_hours) + timedelta(
            hours=settings.national_send_hours
        )
    context = {
        "settings": settings,
        "problem": refusal_text(Conflict(problem), _) if problem else "",
        "next_window": next_window,
        "counts": {code: outbox.count(session, DeliveryStatus(code)) for code in STATUS_LABELS},
        "total": outbox.count(session),
        "items": outbox.items(session, status=chosen, limit=PAGE_SIZE),
        "status": chosen.value if chosen else "",
        "values": values or {"start": quarter_start.date().isoformat(), "end": today.isoformat()},
        "notice": _(DONE[done]) if done in DONE else "",
        "error": error,
        **_helpers(request),
    }
    return render(request, "sharing/page.html", context, viewer=viewer, status_code=status_code)


@router.get("/sharing")
def sharing_page(
    request: Request,
    session: ConsoleDb,
    viewer: AdminViewer,
    settings: Settings,
    status: Annotated[str, Query(max_length=16)] = "",
    done: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    return _page(request, session, settings, viewer, status=status, done=done)


def _period(start: str, end: str) -> tuple[Any, Any]:
    """The form's days (both included, Vietnam's calendar) as [first moment, first moment after), the end no
    later than now."""
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError:
        raise BadRequest("give the first and the last day of the period") from None
    if last < first:
        raise BadRequest("the period must end after it starts")
    return statistics.day_start(first), min(statistics.day_start(last + timedelta(days=1)), utcnow())


@router.post("/sharing/send")
def send_now(
    request: Request,
    session: ConsoleDb,
    viewer: AdminWriter,
    settings: Settings,
    start: Annotated[str, Form(max_length=10)] = "",
    end: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    _ = gettext(request)
    try:
        first, after = _period(start, end)
        item = outbox.queue(session, settings, viewer.caller.actor, start=first, end=after)
    except ServerError as refused:
        session.rollback()
        return _page(
            request,
            session,
            settings,
            viewer,
            values={"start": start, "end": end},
            error=refusal_text(refused, _),
            status_code=refused.status,
        )
    return redirect(f"/sharing/{item.id}?done=queued")


@router.get("/sharing/{delivery_id}")
def delivery_page(
    request: Request,
    delivery_id: PathId,
    session: ConsoleDb,
    viewer: AdminViewer,
    settings: Settings,
    done: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    _ = gettext(request)
    item = outbox.get(session, delivery_id)
    context = {
        "item": item,
        "settings": settings,
        "notice": _(DONE[done]) if done in DONE else "",
        **_helpers(request),
    }
    return render(request, "sharing/detail.html", context, viewer=viewer)


@router.post("/sharing/{delivery_id}/retry")
def retry(request: Request, delivery_id: PathId, session: ConsoleDb, viewer: AdminWriter) -> Response:
    outbox.retry(session, viewer.caller.actor, delivery_id)
    return redirect(f"/sharing/{delivery_id}?done=retried")
