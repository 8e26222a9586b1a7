"""Federation tables: the children a parent knows (and what they last sent), and, on a child, which of its
submitted reports the parent has acknowledged.

The child's own link to its parent (URL, child id, pinned certificate, private key) lives in files of its data
directory, not here: it is the child host's identity, like the TLS key (see ``child.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from garrison.server.db import Base, utcnow


class FederationChild(Base):
    """(Parent side.) A child server registered by an administrator, standing for ``unit_id`` in this tree."""

    __tablename__ = "federation_children"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)  # also ReportSubmission.received_from
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The one-time join token (SHA-256 only), cleared when used; None also once joined.
    join_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    join_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    public_key: Mapped[str | None] = mapped_column(String(64))  # base64 of the raw Ed25519 key, set by the join
    joined_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The last push accepted: its sequence (a later push must be higher: no replay), when it arrived, the child's
    # clock then, its software version and push interval, from where, and its figures (a list of quarters).
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    child_clock: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    software_version: Mapped[str] = mapped_column(String(64), default="")
    push_seconds: Mapped[float | None] = mapped_column(Float)
    last_address: Mapped[str | None] = mapped_column(String(64))
    aggregates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class FederationReceivedReport(Base):
    """(Parent side.) A child's submitted report stored here, by the child's own key: a push repeated (an answer
    lost on the way) stores it once."""

    __tablename__ = "federation_received_reports"
    __table_args__ = (UniqueConstraint("child_id", "child_submission_id", "child_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("federation_children.id", ondelete="CASCADE"))
    child_submission_id: Mapped[int] = mapped_column(Integer)
    child_version: Mapped[int] = mapped_column(Integer)
    submission_id: Mapped[int] = mapped_column(ForeignKey("report_submissions.id", ondelete="CASCADE"), index=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FederationAcknowledged(Base):
    """(Child side.) A report submitted here that the parent of link ``link`` acknowledged: not pushed again.

    ``link`` is the random id of one join; after leaving and joining again (another parent, or the same one
    anew), every report is pushed again."""

    __tablename__ = "federation_acknowledged"

    link: Mapped[str] = mapped_column(String(36), primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        ForeignKey("report_submissions.id", ondelete="CASCADE"), primary_key=True
    )
    acknowledged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
