"""Alert rules (one per unit, watching its subtree), their recipients, the alert records evaluation raises, and
every attempt to send a message.

A record is news once (``raised_at``); a recipient has received everything raised up to its ``covered_until``.
A message is built for a recipient from the records raised since, at most once per quiet interval, so nothing is
lost when a send fails (the next pass covers the same records again) and nothing is sent twice.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from garrison.server.db import Base, utcnow


class AlertKind(StrEnum):
    NEW_DETECTION = "new_detection"
    OUTBREAK = "outbreak"
    OFFLINE = "offline"
    OUTDATED = "outdated"
    UPDATE_FAILING = "update_failing"
    DEADLINE = "deadline"


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class AlertRule(Base):
    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), unique=True)
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    language: Mapped[str] = mapped_column(String(2), default="vi")
    outbreak_computers: Mapped[int] = mapped_column(Integer, default=3)
    outbreak_minutes: Mapped[int] = mapped_column(Integer, default=60)
    offline_hours: Mapped[int] = mapped_column(Integer, default=24)
    outdated_days: Mapped[int] = mapped_column(Integer, default=7)
    quiet_minutes: Mapped[int] = mapped_column(Integer, default=15)
    # The newest detection already looked at, by (received_at, id): nothing missed or repeated across restarts.
    detections_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    detections_seen_id: Mapped[str] = mapped_column(String(36), default="")
    evaluated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertRecipient(Base):
    """An e-mail address or a webhook; a webhook's URL is a secret, kept encrypted (``secret``), shown masked."""

    __tablename__ = "alert_recipients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))  # the e-mail address, or the webhook URL masked
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    covered_until: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set while a server process is sending to it, so that another process does not send the same message.
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertRecord(Base):
    """Something a rule found: one per condition (a computer offline, an outbreak) or per pass and computer and
    malware name for new detections."""

    __tablename__ = "alert_records"
    __table_args__ = (Index("ix_alert_records_rule_id_dedupe_key", "rule_id", "dedupe_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    raised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AlertDelivery(Base):
    """One attempt to send one message to one recipient (test messages included)."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True)
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("alert_recipients.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(320))  # as shown: the address, or the masked URL
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(String(255), default="")
    records: Mapped[int] = mapped_column(Integer, default=0)
    covers_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    covers_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    test: Mapped[bool] = mapped_column(Boolean, default=False)
