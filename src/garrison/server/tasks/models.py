"""Tasks, one run per target agent, collected samples, and the files agents hold in quarantine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from garrison.protocol.tasks import QuarantineState, TaskKind
from garrison.server.db import Base, enum_values, utcnow


class Task(Base):
    """What a person asked for, of which agents, until when."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[TaskKind] = mapped_column(Enum(TaskKind, native_enum=False, length=16, values_callable=enum_values))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    comment: Mapped[str] = mapped_column(String(1024), default="")
    #: the unit whose subtree holds every target: who may see the task
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(255), default="")  # how the targets were chosen, for people
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by_name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RunState:
    """States of one agent's run of a task; ``running``, ``done`` and ``failed`` come from the agent."""

    QUEUED = "queued"  # waiting for the agent's next heartbeat
    SENT = "sent"  # handed to the agent, no answer yet
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"  # the agent did not answer before the task expired
    CANCELLED = "cancelled"

    OPEN = (QUEUED, SENT, RUNNING)
    FINAL = (DONE, FAILED, EXPIRED, CANCELLED)
    ALL = (QUEUED, SENT, RUNNING, DONE, FAILED, EXPIRED, CANCELLED)


class TaskRun(Base):
    __tablename__ = "task_runs"
    __table_args__ = (Index("ix_task_runs_agent_state", "agent_id", "state"),)

    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=RunState.QUEUED)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Sample(Base):
    """A file an agent uploaded for a collect task, stored encrypted under the server's sample key."""

    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    blob: Mapped[str] = mapped_column(String(64), unique=True)  # file name in the sample store
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class QuarantinedFile(Base):
    """A file an agent put in its quarantine, learnt from its detection events and followed through tasks."""

    __tablename__ = "quarantined_files"

    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    detection_id: Mapped[str | None] = mapped_column(ForeignKey("detections.id", ondelete="SET NULL"))
    path: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer, default=0)
    quarantined_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    state: Mapped[QuarantineState] = mapped_column(
        Enum(QuarantineState, native_enum=False, length=16, values_callable=enum_values),
        default=QuarantineState.QUARANTINED,
        index=True,
    )
    state_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state_task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"))
