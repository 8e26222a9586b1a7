"""Console page of alerts (``/alerts?unit=ID``): a unit's rule (which kinds, thresholds, quiet interval,
language), its recipients (webhook addresses only masked once saved), a test message, and the recent alerts and
sending attempts.

Everything goes through ``alerts.rules`` and ``alerts.deliver`` with the viewer's scope: a unit outside it
answers 404, auditors see the page without its buttons and are refused if they post. Form input is validated by
the API's own ``RuleIn`` schema.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Form, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from garrison.server.alerts import deliver, rules, service
from garrison.server.alerts.models import AlertKind, AlertRule, Channel
from garrison.server.alerts.schemas import RuleIn
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
    redirect,
    render,
)
from garrison.server.db import utcnow
from garrison.server.deps import Settings
from garrison.server.errors import ServerError
from garrison.server.units import service as units
from garrison.server.units.models import Unit

router = console_router()

KIND_LABELS = {
    AlertKind.NEW_DETECTION: N_("New malware found on a computer"),
    AlertKind.OUTBREAK: N_("The same malware on several computers in a short time (outbreak)"),
    AlertKind.OFFLINE: N_("A computer has not reported for too long"),
    AlertKind.OUTDATED: N_("A computer's signatures are too old"),
    AlertKind.UPDATE_FAILING: N_("Updates are failing (on a computer, or on the server)"),
    AlertKind.DEADLINE: N_("The quarterly report is due soon and not yet submitted"),
}
DONE = {
    "saved": N_("The alert rule was saved."),
    "deleted": N_("The alert rule was deleted: nobody receives this unit's alerts from it any more."),
}
FIELD_PROBLEMS = {
    "kinds": N_("Choose among the kinds of alerts listed."),
    "language": N_("Choose Vietnamese or English."),
    "outbreak_computers": N_("Enter a whole number from 2 to 10,000."),
    "outbreak_minutes": N_("Enter a whole number of minutes from 5 to 10,080 (one week)."),
    "offline_hours": N_("Enter a whole number of hours from 1 to 2,160 (90 days)."),
    "outdated_days": N_("Enter a whole number of days from 1 to 365."),
    "quiet_minutes": N_("Enter a whole number of minutes from 1 to 1,440 (one day)."),
    "emails": N_("Enter one e-mail address per line (at most 20)."),
    "webhooks": N_("Enter one web address per line, starting with https:// or http:// (at most 10 in all)."),
}
TEXT_FIELDS = ("emails", "new_webhooks")
LIMIT_FIELDS = ("outbreak_computers", "outbreak_minutes", "offline_hours", "outdated_days", "quiet_minutes")


def _values(rule: AlertRule | None) -> dict[str, Any]:
    source: Any = rule if rule is not None else rules.RuleFields()
    values: dict[str, Any] = {name: str(getattr(source, name)) for name in LIMIT_FIELDS}
    values |= {"kinds": list(source.kinds), "language": source.language, "emails": "", "new_webhooks": ""}
    return values


def _page(
    request: Request,
    session: Session,
    viewer: Viewer,
    unit: Unit,
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    error: str = "",
    notice: str = "",
    status_code: int = 200,
) -> Response:
    scope = viewer.caller.scope
    unit, rule = rules.rule_of(session, scope, unit.id)
    saved = rules.recipients(session, rule) if rule is not None else []
    values = values or _values(rule) | {"emails": "\n".join(r.address for r in saved if r.channel == Channel.EMAIL)}
    _ = gettext(request)
    context = {
        "unit": unit,
        "rule": rule,
        "units": tree_rows(units.subtree(session, scope)),
        "applying": rules.applying(session, scope, unit),
        "values": values,
        "errors": errors or {},
        "error": error,
        "notice": notice,
        "kinds": [(kind.value, _(label)) for kind, label in KIND_LABELS.items()],
        "kind_names": {kind.value: _(label) for kind, label in KIND_LABELS.items()},
        "webhooks": [r for r in saved if r.channel == Channel.WEBHOOK],
        "records": service.records(session, scope, unit_id=unit.id, limit=30) if rule is not None else [],
        "deliveries": service.deliveries(session, scope, unit_id=unit.id, limit=30) if rule is not None else [],
    }
    return render(request, "alerts/page.html", context, viewer=viewer, status_code=status_code)


@router.get("/alerts")
def page(
    request: Request, session: ConsoleDb, viewer: CurrentViewer, unit: str = "", done: str = "",
    sent: int = 0, failed: int = 0,
) -> Response:  # fmt: skip
    _ = gettext(request)
    scope = viewer.caller.scope
    if unit.isdigit() and len(unit) < 10:
        chosen = units.get(session, scope, int(unit))
    else:
        top = units.subtree(session, scope)
        if not top:
            return render(request, "alerts/page.html", {"unit": None}, viewer=viewer)
        chosen = top[0]
    notice = _(DONE[done]) if done in DONE else ""
    if done == "tested":
        notice = _("Test message: %(sent)s sent, %(failed)s failed (see the sending attempts below).") % {
            "sent": sent,
            "failed": failed,
        }
    return _page(request, session, viewer, chosen, notice=notice)


def _parse(form: dict[str, Any], keep: list[int], _: i18n.Gettext) -> tuple[rules.RuleFields | None, dict[str, str]]:
    lines = {
        name: [line.strip() for line in form[name].splitlines() if line.strip()] for name in ("emails", "new_webhooks")
    }
    raw = {name: form[name] or "0" for name in LIMIT_FIELDS}
    raw |= {"kinds": form["kinds"], "language": form["language"], "emails": lines["emails"]}
    raw["webhooks"] = [{"id": i} for i in keep] + [{"url": url} for url in lines["new_webhooks"]]
    wrong = set()
    for name, check in (("emails", rules.check_email), ("new_webhooks", rules.check_webhook)):
        try:
            for line in lines[name]:
                check(line)
        except ServerError:
            wrong.add(name.removeprefix("new_"))
    try:
        checked = RuleIn.model_validate(raw)
    except ValidationError as invalid:
        wrong |= {str(e["loc"][0]) for e in invalid.errors() if e["loc"]}
    if wrong:
        return None, {name: _(FIELD_PROBLEMS[name]) for name in FIELD_PROBLEMS if name in wrong}
    fields = rules.RuleFields(
        kinds=[kind.value for kind in checked.kinds],
        language=checked.language,
        **{name: getattr(checked, name) for name in LIMIT_FIELDS},
        emails=checked.emails,
        keep_webhooks=keep,
        new_webhooks=lines["new_webhooks"],
    )
    return fields, {}


@router.post("/alerts/{unit_id}")
def save(
    request: Request,
    unit_id: int,
    session: ConsoleDb,
    viewer: WritingViewer,
    settings: Settings,
    kinds: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies defaults
    language: Annotated[str, Form()] = "vi",
    outbreak_computers: Annotated[str, Form()] = "",
    outbreak_minutes: Annotated[str, Form()] = "",
    offline_hours: Annotated[str, Form()] = "",
    outdated_days: Annotated[str, Form()] = "",
    quiet_minutes: Annotated[str, Form()] = "",
    emails: Annotated[str, Form(max_length=20_000)] = "",
    keep_webhooks: Annotated[list[int], Form()] = [],  # noqa: B006
    new_webhooks: Annotated[str, Form(max_length=30_000)] = "",
) -> Response:
    _ = gettext(request)
    unit = units.get(session, viewer.caller.scope, unit_id)
    form: dict[str, Any] = {
        "kinds": kinds, "language": language, "outbreak_computers": outbreak_computers.strip(),
        "outbreak_minutes": outbreak_minutes.strip(), "offline_hours": offline_hours.strip(),
        "outdated_days": outdated_days.strip(), "quiet_minutes": quiet_minutes.strip(), "emails": emails,
        "new_webhooks": new_webhooks,
    }  # fmt: skip
    fields, errors = _parse(form, keep_webhooks, _)
    if fields is None:
        return _page(request, session, viewer, unit, values=form, errors=errors, status_code=400)
    try:
        rules.save(session, viewer.caller.scope, viewer.caller.actor, settings.data_dir, unit.id, fields, utcnow())
    except ServerError as refused:
        session.rollback()
        error = i18n.explain_error(refused, _)
        return _page(request, session, viewer, unit, values=form, error=error, status_code=refused.status)
    return redirect(f"/alerts?unit={unit.id}&done=saved")


@router.post("/alerts/{unit_id}/test")
def send_test(unit_id: int, session: ConsoleDb, viewer: WritingViewer, settings: Settings) -> Response:
    done = deliver.send_trial(session, viewer.caller.scope, viewer.caller.actor, settings, unit_id, utcnow())
    sent = sum(d.ok for d in done)
    return redirect(f"/alerts?unit={unit_id}&done=tested&sent={sent}&failed={len(done) - sent}")


@router.post("/alerts/{unit_id}/delete")
def delete(unit_id: int, session: ConsoleDb, viewer: WritingViewer) -> Response:
    rules.delete(session, viewer.caller.scope, viewer.caller.actor, unit_id)
    return redirect(f"/alerts?unit={unit_id}&done=deleted")
