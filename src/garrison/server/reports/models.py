"""Submitted quarterly reports: the figures as they were reported, frozen.

A unit's report for a quarter is *submitted* once someone with the right to report says so (or a child server's
submission arrives by federation). Its figures are stored as a snapshot (``Statistics.to_json``), so a detection
triaged or an agent enrolled later does not silently change what was reported; the documents of a submitted
report are rendered from the snapshot, not from live data. A correction is a new version; earlier versions stay.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Date, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from garrison.server.db import Base, utcnow


class ReportSubmission(Base):
    __tablename__ = "report_submissions"
    __table_args__ = (UniqueConstraint("unit_id", "year", "quarter", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    year: Mapped[int] = mapped_column(Integer)
    quarter: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer, default=1)  # 1, then 2 for a correction, ...
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)  # Statistics.to_json() at submission
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the document's number, signer, ... as given
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    submitted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    submitted_by_name: Mapped[str] = mapped_column(String(255), default="")
    # None: submitted on this server; otherwise the federated child server it came from (federation's name for it).
    received_from: Mapped[str | None] = mapped_column(String(128))


class ReportingLine(Base):
    """The deadline rule a unit sets for the units directly under it (they report to it): the day of each
    quarter's last month before which they submit, and the days before it on which they are reminded. A unit
    without a line passes on the nearest ancestor's (``reports.calendar``)."""

    __tablename__ = "reporting_lines"
    __table_args__ = (CheckConstraint("deadline_day >= 2 AND deadline_day <= 30", "deadline_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), unique=True)
    deadline_day: Mapped[int] = mapped_column(Integer)  # due before this day (00:00 Vietnam time)
    reminder_days: Mapped[list[int]] = mapped_column(JSON)  # days before the deadline, largest first
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by_name: Mapped[str] = mapped_column(String(255), default="")


class EndpointState(Base):
    """The computers of one unit (not its subtree) as they were on one day, Vietnam time: what the statistics of a
    past period report as the endpoints' state at its end, instead of the state now (``reports.history``).

    Written by the server's background pass every ``statistics_record_seconds``; each pass replaces the day's rows,
    so a day keeps the last state seen in it."""

    __tablename__ = "endpoint_states"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), primary_key=True)
    declared_servers: Mapped[int] = mapped_column(Integer)
    declared_workstations: Mapped[int] = mapped_column(Integer)
    declared_other: Mapped[int] = mapped_column(Integer)
    active: Mapped[int] = mapped_column(Integer)
    online: Mapped[int] = mapped_column(Integer)
    protected: Mapped[int] = mapped_column(Integer)
    realtime_on: Mapped[int] = mapped_column(Integer)
    firewall_on: Mapped[int] = mapped_column(Integer)
    firewall_unknown: Mapped[int] = mapped_column(Integer)
    signatures_7: Mapped[int] = mapped_column(Integer)
    signatures_15: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
