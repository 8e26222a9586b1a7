"""REST endpoints of alerts: rules per unit (read by everyone in scope, changed by administrators of the unit or
above), a test message, and the history of alerts and sending attempts. Every change is audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from garrison.server.alerts import deliver, rules, service
from garrison.server.alerts.models import AlertKind, AlertRule, Channel
from garrison.server.alerts.schemas import DeliveryOut, RecipientOut, RecordOut, RuleIn, RuleOut, WatchingRule
from garrison.server.auth.scope import Scope
from garrison.server.db import utcnow
from garrison.server.deps import CurrentCaller, DbSession, Settings
from garrison.server.errors import ERROR_RESPONSES
from garrison.server.units.models import Unit
from garrison.server.wire import ID_MAX, PathId

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], responses=ERROR_RESPONSES)

UnitFilter = Annotated[int | None, Query(ge=1, le=ID_MAX, description="one unit's rule; default every rule in scope")]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=ID_MAX)]


def rule_out(session: Session, scope: Scope, unit: Unit, rule: AlertRule | None) -> RuleOut:
    saved = rules.recipients(session, rule) if rule is not None else []
    values = rule if rule is not None else rules.RuleFields()
    return RuleOut(
        unit_id=unit.id,
        unit_name=unit.name,
        configured=rule is not None,
        kinds=list(values.kinds),
        language=values.language,
        outbreak_computers=values.outbreak_computers,
        outbreak_minutes=values.outbreak_minutes,
        offline_hours=values.offline_hours,
        outdated_days=values.outdated_days,
        quiet_minutes=values.quiet_minutes,
        emails=[RecipientOut.model_validate(r) for r in saved if r.channel == Channel.EMAIL],
        webhooks=[RecipientOut.model_validate(r) for r in saved if r.channel == Channel.WEBHOOK],
        applies=[WatchingRule(unit_id=u.id, unit_name=u.name) for u, _ in rules.applying(session, scope, unit)],
        updated_at=rule.updated_at if rule is not None else None,
    )


@router.get("/rules", response_model=list[RuleOut])
def list_rules(session: DbSession, caller: CurrentCaller) -> list[RuleOut]:
    """The rules of every unit in the caller's scope, in tree order."""
    return [rule_out(session, caller.scope, unit, rule) for unit, rule in rules.rules_in(session, caller.scope)]


@router.get("/rules/{unit_id}", response_model=RuleOut)
def get_rule(unit_id: PathId, session: DbSession, caller: CurrentCaller) -> RuleOut:
    """The unit's own rule (``configured`` false: none, the defaults shown) and every rule that watches it."""
    unit, rule = rules.rule_of(session, caller.scope, unit_id)
    return rule_out(session, caller.scope, unit, rule)


@router.put("/rules/{unit_id}", response_model=RuleOut)
def put_rule(unit_id: PathId, body: RuleIn, session: DbSession, caller: CurrentCaller, settings: Settings) -> RuleOut:
    """Create or replace the unit's rule. Webhooks: ``{"id": n}`` keeps a saved one, ``{"url": ...}`` adds one
    (shown masked from then on); those not listed are removed, as are e-mail addresses not listed."""
    fields = rules.RuleFields(
        kinds=[kind.value for kind in body.kinds],
        language=body.language,
        outbreak_computers=body.outbreak_computers,
        outbreak_minutes=body.outbreak_minutes,
        offline_hours=body.offline_hours,
        outdated_days=body.outdated_days,
        quiet_minutes=body.quiet_minutes,
        emails=body.emails,
        keep_webhooks=[w.id for w in body.webhooks if w.id is not None and w.url is None],
        new_webhooks=[w.url for w in body.webhooks if w.url is not None],
    )
    rules.save(session, caller.scope, caller.actor, settings.data_dir, unit_id, fields, utcnow())
    unit, rule = rules.rule_of(session, caller.scope, unit_id)
    return rule_out(session, caller.scope, unit, rule)


@router.delete("/rules/{unit_id}", status_code=204)
def delete_rule(unit_id: PathId, session: DbSession, caller: CurrentCaller) -> None:
    rules.delete(session, caller.scope, caller.actor, unit_id)


@router.post("/rules/{unit_id}/test", response_model=list[DeliveryOut])
def send_test(unit_id: PathId, session: DbSession, caller: CurrentCaller, settings: Settings) -> list[DeliveryOut]:
    """Send a test message to every recipient of the unit's rule now; each attempt is answered and recorded."""
    done = deliver.send_trial(session, caller.scope, caller.actor, settings, unit_id, utcnow())
    return [DeliveryOut.model_validate(d) for d in done]


@router.get("/records", response_model=list[RecordOut])
def list_records(
    session: DbSession,
    caller: CurrentCaller,
    unit_id: UnitFilter = None,
    kind: AlertKind | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[RecordOut]:
    """What the rules in the caller's scope found, newest first."""
    found = service.records(
        session, caller.scope, unit_id=unit_id, kind=kind.value if kind else None, limit=limit, offset=offset
    )
    return [RecordOut.model_validate(r) for r in found]


@router.get("/deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    session: DbSession, caller: CurrentCaller, unit_id: UnitFilter = None, limit: Limit = 50, offset: Offset = 0
) -> list[DeliveryOut]:
    """Every attempt to send a message (test messages included), newest first."""
    found = service.deliveries(session, caller.scope, unit_id=unit_id, limit=limit, offset=offset)
    return [DeliveryOut.model_validate(d) for d in found]
