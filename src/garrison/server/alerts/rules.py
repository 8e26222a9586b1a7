"""Alert rules: one per unit, watching the unit's whole subtree; an administrator of the unit (or above) edits it,
auditors read it. Every change is in the audit log (webhook URLs only masked)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison.server.alerts import vault
from garrison.server.alerts.models import AlertKind, AlertRecipient, AlertRule, Channel
from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.errors import BadRequest, Forbidden, NotFound
from garrison.server.units import service as units
from garrison.server.units.models import Unit

LANGUAGES = ("vi", "en")
MAX_EMAILS = 20
MAX_WEBHOOKS = 10
MAX_URL = 2048
# Deliberately simple: one @, a dotted domain, no spaces or angle brackets (which could inject mail headers).
_EMAIL = re.compile(r"^[^@\s<>,;\"]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")

#: What a new rule holds when nothing else is said.
DEFAULT_KINDS = tuple(kind.value for kind in AlertKind)
LIMITS = {
    # field: (default, smallest, largest)
    "outbreak_computers": (3, 2, 10_000),
    "outbreak_minutes": (60, 5, 7 * 24 * 60),
    "offline_hours": (24, 1, 90 * 24),
    "outdated_days": (7, 1, 365),
    "quiet_minutes": (15, 1, 24 * 60),
}


@dataclass(frozen=True, slots=True)
class RuleFields:
    kinds: Sequence[str] = DEFAULT_KINDS
    language: str = "vi"
    outbreak_computers: int = LIMITS["outbreak_computers"][0]
    outbreak_minutes: int = LIMITS["outbreak_minutes"][0]
    offline_hours: int = LIMITS["offline_hours"][0]
    outdated_days: int = LIMITS["outdated_days"][0]
    quiet_minutes: int = LIMITS["quiet_minutes"][0]
    emails: Sequence[str] = ()
    keep_webhooks: Sequence[int] = ()  # ids of saved webhooks to keep (their URLs are never sent back)
    new_webhooks: Sequence[str] = ()


def check_email(address: str) -> str:
    address = address.strip()
    if len(address) > 254 or not _EMAIL.match(address):
        raise BadRequest(f"not an e-mail address: {address[:80]!r}")
    return address


def check_webhook(url: str) -> str:
    """An ``http(s)://`` URL with a host; never echoed back in the error (it may hold a credential)."""
    url = url.strip()
    parts = urlsplit(url)
    spaced = any(c.isspace() for c in url)
    if len(url) > MAX_URL or parts.scheme not in {"http", "https"} or not parts.hostname or spaced:
        raise BadRequest("a webhook must be an http:// or https:// address with a host name (at most 2048 characters)")
    return url


def _check(fields: RuleFields) -> None:
    unknown = set(fields.kinds) - set(DEFAULT_KINDS)
    if unknown:
        raise BadRequest(f"unknown alert kinds: {', '.join(sorted(unknown))}")
    if fields.language not in LANGUAGES:
        raise BadRequest("the language must be vi or en")
    for name, (_default, low, high) in LIMITS.items():
        value = getattr(fields, name)
        if not low <= value <= high:
            raise BadRequest(f"{name} must be between {low} and {high}")
    if len(fields.emails) > MAX_EMAILS:
        raise BadRequest(f"at most {MAX_EMAILS} e-mail addresses")
    if len(fields.keep_webhooks) + len(fields.new_webhooks) > MAX_WEBHOOKS:
        raise BadRequest(f"at most {MAX_WEBHOOKS} webhooks")


def rule_of(session: Session, scope: Scope, unit_id: int) -> tuple[Unit, AlertRule | None]:
    """The unit (404 outside the scope) and its own rule, if it has one."""
    unit = units.get(session, scope, unit_id)
    return unit, session.scalar(select(AlertRule).where(AlertRule.unit_id == unit.id))


def applying(session: Session, scope: Scope, unit: Unit) -> list[tuple[Unit, AlertRule]]:
    """The rules that watch ``unit``: its own and those of the units above it that the scope may see, nearest
    first (each rule watches its unit's whole subtree; rules do not merge, each sends its own messages)."""
    ids = [int(part) for part in unit.path.strip("/").split("/") if part]
    query = select(Unit, AlertRule).join(AlertRule, AlertRule.unit_id == Unit.id).where(Unit.id.in_(ids))
    found = [(u, r) for u, r in session.execute(query) if scope.contains(u.path)]
    return sorted(found, key=lambda pair: -len(units.tree_order(pair[0])))


def recipients(session: Session, rule: AlertRule) -> list[AlertRecipient]:
    query = select(AlertRecipient).where(AlertRecipient.rule_id == rule.id).order_by(AlertRecipient.id)
    return list(session.scalars(query))


def rules_in(session: Session, scope: Scope) -> list[tuple[Unit, AlertRule]]:
    query = select(Unit, AlertRule).join(AlertRule, AlertRule.unit_id == Unit.id)
    if not scope.everything:
        query = query.where(Unit.path.startswith(scope.path))
    return sorted(((u, r) for u, r in session.execute(query)), key=lambda pair: units.tree_order(pair[0]))


def save(
    session: Session, scope: Scope, actor: Actor, data_dir: Path, unit_id: int, fields: RuleFields, now: datetime
) -> AlertRule:
    """Create or replace the unit's rule and its recipients. Kept recipients keep their place in the sending
    (what they already received); new ones receive what is raised from now on."""
    if not scope.writable:
        raise Forbidden("read-only access")
    _check(fields)
    emails = list(dict.fromkeys(check_email(e).lower() for e in fields.emails))
    new_urls = list(dict.fromkeys(check_webhook(u) for u in fields.new_webhooks))
    unit, rule = rule_of(session, scope, unit_id)
    created = rule is None
    if rule is None:
        rule = AlertRule(unit_id=unit.id, detections_seen_at=now, detections_seen_id="", created_at=now)
        session.add(rule)
    rule.kinds = [kind for kind in DEFAULT_KINDS if kind in set(fields.kinds)]
    rule.language = fields.language
    for name in LIMITS:
        setattr(rule, name, getattr(fields, name))
    rule.updated_at = now
    session.flush()
    existing = recipients(session, rule) if not created else []
    kept_ids = set(fields.keep_webhooks)
    unknown = kept_ids - {r.id for r in existing if r.channel == Channel.WEBHOOK}
    if unknown:
        raise BadRequest(f"no webhook {min(unknown)} on this rule")
    for recipient in existing:
        if recipient.channel == Channel.EMAIL and recipient.address in emails:
            emails.remove(recipient.address)  # kept as it is
        elif recipient.channel == Channel.WEBHOOK and recipient.id in kept_ids:
            pass
        else:
            session.delete(recipient)
    for address in emails:
        session.add(AlertRecipient(rule_id=rule.id, channel=Channel.EMAIL, address=address, covered_until=now))
    for url in new_urls:
        sealed = vault.seal(data_dir, url)
        session.add(
            AlertRecipient(
                rule_id=rule.id, channel=Channel.WEBHOOK, address=vault.mask(url), secret=sealed, covered_until=now
            )
        )
    session.flush()
    saved = recipients(session, rule)
    record(
        session,
        actor,
        "alerts.rule_create" if created else "alerts.rule_update",
        "alert_rule",
        rule.id,
        unit_id=unit.id,
        kinds=rule.kinds,
        language=rule.language,
        thresholds={name: getattr(rule, name) for name in LIMITS},
        emails=[r.address for r in saved if r.channel == Channel.EMAIL],
        webhooks=[r.address for r in saved if r.channel == Channel.WEBHOOK],  # masked
    )
    return rule


def delete(session: Session, scope: Scope, actor: Actor, unit_id: int) -> None:
    if not scope.writable:
        raise Forbidden("read-only access")
    unit, rule = rule_of(session, scope, unit_id)
    if rule is None:
        raise NotFound(f"unit {unit_id} has no alert rule")
    record(session, actor, "alerts.rule_delete", "alert_rule", rule.id, unit_id=unit.id)
    session.delete(rule)
    session.flush()
