"""Policies, agent groups and the fleet-wide allow-list.

A unit points at the policy assigned to it (``units.policy_id``); an agent group points at its own. Policies hold
only the settings they change (a *layer*, see :mod:`garrison.protocol.policy`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from garrison.server.db import Base, utcnow


class Policy(Base):
    """A named set of settings, owned by a unit (who may change it) and assigned to units and groups."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("owner_unit_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    owner_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PolicyAssignment(Base):
    """Which policy a unit has (inherited by the units below it that have none of their own settings for a key)."""

    __tablename__ = "policy_assignments"

    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policies.id", ondelete="RESTRICT"), index=True)
    assigned_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AgentGroup(Base):
    """Computers of one unit's subtree grouped across units (for example all servers), with their own policy,
    which overrides the units' policies."""

    __tablename__ = "agent_groups"
    __table_args__ = (UniqueConstraint("unit_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("policies.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AllowedFile(Base):
    """A file known to be safe everywhere (a false positive allow-listed fleet-wide), by SHA-256."""

    __tablename__ = "allowed_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(1024), default="")
    detection_name: Mapped[str | None] = mapped_column(String(255))
    added_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PolicyState(Base):
    """One row: a number that every change able to change some computer's policy document (a policy's settings,
    an assignment, a group's policy, the allow-list) replaces with a new random one. Server processes cache
    revisions by it, so a heartbeat costs one small query instead of reading every layer. Random rather than
    counted: a database restored from a backup (or a rolled-back transaction) brings back a number that still
    stands for exactly that state, so no process can answer from a cache of another state."""

    __tablename__ = "policy_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
