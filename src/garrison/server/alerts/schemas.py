"""Wire shapes of the alerts API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from garrison.server.alerts.models import AlertKind
from garrison.server.alerts.rules import DEFAULT_KINDS, LIMITS, MAX_EMAILS, MAX_URL, MAX_WEBHOOKS
from garrison.server.wire import Id, UtcDateTime


def _limit(name: str) -> Any:
    default, low, high = LIMITS[name]
    return Field(default=default, ge=low, le=high)


class WebhookIn(BaseModel):
    """A saved webhook to keep (``id``, its URL is never sent back) or a new one (``url``)."""

    id: Id | None = None
    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL)


class RuleIn(BaseModel):
    kinds: list[AlertKind] = Field(default=[AlertKind(k) for k in DEFAULT_KINDS], max_length=len(DEFAULT_KINDS))
    language: Literal["vi", "en"] = "vi"
    outbreak_computers: int = _limit("outbreak_computers")
    outbreak_minutes: int = _limit("outbreak_minutes")
    offline_hours: int = _limit("offline_hours")
    outdated_days: int = _limit("outdated_days")
    quiet_minutes: int = _limit("quiet_minutes")
    emails: list[str] = Field(default=[], max_length=MAX_EMAILS)
    webhooks: list[WebhookIn] = Field(default=[], max_length=MAX_WEBHOOKS)


class RecipientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    channel: str
    address: str  # a webhook's URL masked
    last_sent_at: UtcDateTime | None


class WatchingRule(BaseModel):
    unit_id: int
    unit_name: str


class RuleOut(BaseModel):
    unit_id: int
    unit_name: str
    configured: bool  # false: the unit has no rule of its own (the values are the defaults)
    kinds: list[str]
    language: str
    outbreak_computers: int
    outbreak_minutes: int
    offline_hours: int
    outdated_days: int
    quiet_minutes: int
    emails: list[RecipientOut]
    webhooks: list[RecipientOut]
    applies: list[WatchingRule]  # every rule that watches this unit (its own first, then those above it)
    updated_at: UtcDateTime | None


class RecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    rule_id: int
    unit_id: int
    kind: str
    subject: str
    details: dict[str, Any]
    count: int
    active: bool
    first_seen: UtcDateTime
    last_seen: UtcDateTime
    raised_at: UtcDateTime
    cleared_at: UtcDateTime | None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    rule_id: int
    channel: str
    target: str
    at: UtcDateTime
    ok: bool
    error: str
    subject: str
    records: int
    covers_from: UtcDateTime | None
    covers_until: UtcDateTime | None
    test: bool
