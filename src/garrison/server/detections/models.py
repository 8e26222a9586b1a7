"""Detections. The primary key is the event UUID the agent chose, which makes ingestion idempotent."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from garrison.server.db import Base, enum_values, utcnow


class Triage(StrEnum):
    NEW = "new"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


class Detection(Base):
    __tablename__ = "detections"
    # A unit's subtree over a period: the statistics and the quarterly report read detections this way.
    __table_args__ = (Index("ix_detections_unit_id_occurred_at", "unit_id", "occurred_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    path: Mapped[str] = mapped_column(Text)
    chain: Mapped[list[Any]] = mapped_column(JSON, default=list)
    name: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    database: Mapped[str | None] = mapped_column(String(1024))
    signature: Mapped[str | None] = mapped_column(String(255))
    md5: Mapped[str | None] = mapped_column(String(32))
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    action: Mapped[str] = mapped_column(String(16))
    action_ok: Mapped[bool] = mapped_column(Boolean, default=True)
    action_detail: Mapped[str | None] = mapped_column(String(1024))
    triage: Mapped[Triage] = mapped_column(
        Enum(Triage, native_enum=False, length=16, values_callable=enum_values), default=Triage.NEW, index=True
    )
    triaged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    triaged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
