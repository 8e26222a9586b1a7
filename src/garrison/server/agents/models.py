"""Enrollment tokens and enrolled agents. Secrets are stored only as SHA-256 hashes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from garrison.server.db import Base, utcnow


class EnrollmentToken(Base):
    """A unit-scoped, expiring, revocable token that agents enroll with (one token serves many agents)."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class Agent(Base):
    """One enrolled endpoint and the last inventory it reported."""

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("agent_groups.id", ondelete="SET NULL"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str] = mapped_column(String(255), index=True)
    os: Mapped[str] = mapped_column(String(64), default="")
    os_version: Mapped[str] = mapped_column(String(128), default="")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    enrolled_with: Mapped[int | None] = mapped_column(ForeignKey("enrollment_tokens.id", ondelete="SET NULL"))
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    last_address: Mapped[str | None] = mapped_column(String(64))
    inventory: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    realtime_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Whether its firewall is on, as it last reported (None: it does not say); a column for the statistics.
    firewall_enabled: Mapped[bool | None] = mapped_column(Boolean)
    signature_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The policy it last said it applies, and the heartbeat interval it was last given.
    policy_revision: Mapped[str] = mapped_column(String(64), default="", server_default="")
    heartbeat_seconds: Mapped[float | None] = mapped_column(Float)
    # Whether a task may wait for it: heartbeats look for tasks only then (most agents, most of the time, have none).
    open_tasks: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Its updates, as it reports them: the signature release installed (and when), and the last failure.
    signature_release: Mapped[int | None] = mapped_column(Integer, index=True)
    signature_installed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    update_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    update_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    update_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
