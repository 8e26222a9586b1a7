"""Submitted quarterly reports: the figures as they were reported, frozen.

A unit's report for a quarter is *submitted* once someone with the right to report says so (or a child server's
submission arrives by federation). Its figures are stored as a snapshot (``Statistics.to_json``), so a detection
triaged or an agent enrolled later does not silently change what was reported; the documents of a submitted
report are rendered from the snapshot, not from live data. A correction is a new version; earlier versions stay.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, UniqueConstraint
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
