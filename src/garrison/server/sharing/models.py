"""The national outbox's tables: one row per signed AVReport to deliver, one row per attempt to deliver it.

The signed document is stored as it was made, so every attempt sends the same bytes with the same message id
(the idempotency key the receiver de-duplicates on). Status changes are conditional UPDATEs (see ``outbox.py``),
so two server processes never send one item at the same time.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, Enum, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from garrison.server.db import Base, enum_values, utcnow


class DeliveryStatus(StrEnum):
    QUEUED = "queued"  # waiting for its next attempt (next_attempt_at)
    SENDING = "sending"  # a worker claimed it and is sending it now
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # refused for good (4xx) or out of attempts; an administrator may retry it


class NationalDelivery(Base):
    """A signed AVReport for [period_start, period_end), on its way to the national authority."""

    __tablename__ = "national_deliveries"
    __table_args__ = (Index("ix_national_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)  # edXML DocumentId, the idempotency key
    # Set on automatic reports only ("auto:<period end>"): two server processes queueing the same period at once
    # collide on it, so the period is queued once. Manual reports leave it NULL (NULLs never collide).
    schedule_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    document: Mapped[bytes] = mapped_column(LargeBinary)  # the signed XML, exactly as sent
    document_sha256: Mapped[str] = mapped_column(String(64))
    machines: Mapped[int] = mapped_column(Integer, default=0)
    infected: Mapped[int] = mapped_column(Integer, default=0)
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by_name: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, native_enum=False, length=16, values_callable=enum_values),
        default=DeliveryStatus.QUEUED,
    )
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # every attempt ever made
    round_attempts: Mapped[int] = mapped_column(Integer, default=0)  # since queued or retried: against the maximum
    claim_token: Mapped[str | None] = mapped_column(String(32))  # the worker that holds the `sending` claim
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text, default="")

    attempt_rows: Mapped[list[NationalAttempt]] = relationship(
        back_populates="delivery", order_by="NationalAttempt.id", cascade="all, delete-orphan", passive_deletes=True
    )


class NationalAttempt(Base):
    """One try at delivering: when, how long, what the receiver answered (truncated) or what went wrong."""

    __tablename__ = "national_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("national_deliveries.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    http_status: Mapped[int | None] = mapped_column(Integer)
    answer: Mapped[str] = mapped_column(Text, default="")  # the receiver's body, at most ANSWER_MAX characters
    error: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16))  # delivered, retry, failed, lost (the sender stopped)

    delivery: Mapped[NationalDelivery] = relationship(back_populates="attempt_rows")
