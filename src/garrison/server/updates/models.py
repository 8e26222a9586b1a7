"""The update channel's tables: signed TUF metadata, the targets it lists, signature releases, agent software
releases and the rollout settings.

TUF metadata lives in the database (every server process serves the same versions, and a publication commits
with the release it announces); target files live content-addressed on disk under ``data_dir/updates/targets``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from garrison.server.db import Base, enum_values, utcnow


class Stage(StrEnum):
    """Where a release is in its rollout."""

    CANARY = "canary"  # only the canary group gets it
    GENERAL = "general"  # everyone gets it
    PULLED = "pulled"  # taken back; nobody is offered it


class TufMetadata(Base):
    """One signed version of a TUF role (root, targets, snapshot, timestamp), as served."""

    __tablename__ = "tuf_metadata"
    __table_args__ = (UniqueConstraint("role", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UpdateTarget(Base):
    """A file the targets role lists (and the server serves)."""

    __tablename__ = "update_targets"

    path: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    length: Mapped[int] = mapped_column(BigInteger)
    custom: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Release(Base):
    """A numbered signature release: the compiled set of every enabled source at one moment."""

    __tablename__ = "signature_releases"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(Text, default="")
    content_sha256: Mapped[str] = mapped_column(String(64))
    content_size: Mapped[int] = mapped_column(BigInteger)
    compressed_size: Mapped[int] = mapped_column(BigInteger)
    signatures: Mapped[int] = mapped_column(Integer, default=0)
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    stage: Mapped[Stage] = mapped_column(Enum(Stage, values_callable=enum_values, native_enum=False, length=16))
    #: When everyone was offered it (published straight to everyone, or promoted); None while canary-only.
    available_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    promoted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    pulled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pulled_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    #: A pull-back release restores the content of this earlier release.
    restores: Mapped[int | None] = mapped_column(Integer)
    hold_reason: Mapped[str] = mapped_column(Text, default="")


class AgentRelease(Base):
    """An agent software version offered through the repository."""

    __tablename__ = "agent_releases"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    target_path: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    notes: Mapped[str] = mapped_column(Text, default="")
    stage: Mapped[Stage] = mapped_column(Enum(Stage, values_callable=enum_values, native_enum=False, length=16))
    available_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RolloutSettings(Base):
    """One row: who the canaries are and when a canary release goes to everyone."""

    __tablename__ = "rollout_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    canary_group_id: Mapped[int | None] = mapped_column(ForeignKey("agent_groups.id", ondelete="SET NULL"))
    canary_hours: Mapped[float] = mapped_column(Float, default=24.0)
    auto_promote: Mapped[bool] = mapped_column(Boolean, default=True)
    #: Bumped on every change of what agents are offered (a release, a promotion, a pull-back, new settings), so
    #: the heartbeat's per-process cache knows when to look again.
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
