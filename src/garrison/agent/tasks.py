"""Running the tasks the server hands out: each once, its result through the outbox.

The server repeats a task in every heartbeat answer until it has the task's final result, so the agent keeps a
ledger (``tasks.json``) of the tasks it has started. A task is written to the ledger *before* it runs: a task the
agent was killed in the middle of is not run again on restart (a half-done restore run twice could overwrite a
file); instead it is reported failed, saying so. Results go into the outbox like detections, so they reach the
server however long it is away, exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from garrison.agent.client import ClientError
from garrison.agent.detections import TASK_RESULT
from garrison.agent.outbox import Outbox
from garrison.agent.quarantine import Quarantine, QuarantineError
from garrison.atomicfile import write_atomic
from garrison.protocol.tasks import RunStatus, TaskKind, TaskOrder

log = logging.getLogger(__name__)

LEDGER_SIZE = 1000
STARTED = "started"
FINISHED = "finished"


class TaskFailed(Exception):
    """A task could not be done; the message says why, for the person who asked."""


class Ledger:
    """Task ids this agent has started and finished, oldest first, bounded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, str] = {}
        try:
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                self.entries = {str(k): str(v) for k, v in loaded.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("ignoring the task ledger in %s: %s", path, exc)

    def __contains__(self, task_id: int) -> bool:
        return str(task_id) in self.entries

    def mark(self, task_id: int, state: str) -> None:
        self.entries.pop(str(task_id), None)
        self.entries[str(task_id)] = state
        while len(self.entries) > LEDGER_SIZE:
            del self.entries[next(iter(self.entries))]
        write_atomic(self.path, json.dumps(self.entries).encode(), 0o600)

    def interrupted(self) -> list[int]:
        return [int(task_id) for task_id, state in self.entries.items() if state == STARTED]


def report(
    outbox: Outbox, task_id: int, status: RunStatus, message: str = "", result: dict[str, Any] | None = None
) -> None:
    outbox.put(
        TASK_RESULT,
        {
            "task_id": task_id,
            "occurred_at": datetime.now(UTC).isoformat(),
            "status": status.value,
            "message": message[:2000],
            "result": result or {},
        },
    )


@dataclass
class TaskContext:
    """What tasks act with (the daemon provides it).

    Attributes:
        scan: scans paths (empty: the policy's) and returns a summary dict for the result.
        update: reloads the signature databases and returns what is loaded now.
        quarantine: opens the quarantine store.
        upload: sends a file's bytes for a collect task.
        restored: told the SHA-256 of each file restored from quarantine (a person decided it is safe: the agent
            must not quarantine it again).
        sample_limit: the largest file a collect task reads.
    """

    scan: Callable[[list[str]], dict[str, Any]]
    update: Callable[[], dict[str, Any]]
    quarantine: Callable[[], Quarantine]
    upload: Callable[[int, str, bytes], None]
    restored: Callable[[str], None]
    sample_limit: int = 64 * 1024 * 1024


class TaskRunner:
    """Takes orders (:meth:`accept`) and runs them one by one (:meth:`run_next`)."""

    def __init__(self, ledger: Ledger, outbox: Outbox, context: TaskContext) -> None:
        self.ledger = ledger
        self.outbox = outbox
        self.context = context
        self.pending: list[TaskOrder] = []

    def recover(self) -> None:
        """Report the tasks a previous run of the agent started and never finished."""
        for task_id in self.ledger.interrupted():
            report(self.outbox, task_id, RunStatus.FAILED, "the agent stopped while running this task; ask again")
            self.ledger.mark(task_id, FINISHED)

    def accept(self, orders: Iterable[TaskOrder]) -> int:
        """Queue the orders not seen before; returns how many are new."""
        known = {order.id for order in self.pending}
        new = [order for order in orders if order.id not in self.ledger and order.id not in known]
        self.pending.extend(new)
        return len(new)

    def run_next(self, now: datetime | None = None) -> TaskOrder | None:
        """Run the oldest pending order; returns it (None when there was none)."""
        if not self.pending:
            return None
        order = self.pending.pop(0)
        if order.expires_at < (now or datetime.now(UTC)):
            return order  # the server has given up on it already; running it now would surprise someone
        self.ledger.mark(order.id, STARTED)
        report(self.outbox, order.id, RunStatus.RUNNING)
        try:
            message, result = self._run(order)
        except TaskFailed as exc:
            log.warning("task %d (%s) failed: %s", order.id, order.kind.value, exc)
            report(self.outbox, order.id, RunStatus.FAILED, str(exc))
        except Exception as exc:  # a task must never take the agent down
            log.exception("task %d (%s) failed", order.id, order.kind.value)
            report(self.outbox, order.id, RunStatus.FAILED, f"unexpected error: {exc}")
        else:
            log.info("task %d (%s) done: %s", order.id, order.kind.value, message)
            report(self.outbox, order.id, RunStatus.DONE, message, result)
        self.ledger.mark(order.id, FINISHED)
        return order

    def _run(self, order: TaskOrder) -> tuple[str, dict[str, Any]]:
        params = order.params
        if order.kind is TaskKind.SCAN:
            paths = [str(p) for p in params.get("paths") or []]
            summary = self.context.scan(paths)
            return f"scanned {summary['files']} files, {summary['infected']} infected", summary
        if order.kind is TaskKind.UPDATE:
            loaded = self.context.update()
            return "signature databases reloaded", loaded
        if order.kind is TaskKind.RESTORE:
            item_id = str(params.get("quarantine_id", ""))
            store = self.context.quarantine()
            try:
                item = store.get(item_id)
                self.context.restored(item.sha256)
                restored = store.restore(item_id)
            except QuarantineError as exc:
                raise TaskFailed(str(exc)) from exc
            return f"restored to {restored}; this computer will not quarantine it again", {
                "path": os.fsdecode(restored),
                "sha256": item.sha256,
            }
        if order.kind is TaskKind.DELETE:
            item_id = str(params.get("quarantine_id", ""))
            try:
                self.context.quarantine().delete(item_id)
            except QuarantineError as exc:
                raise TaskFailed(str(exc)) from exc
            return "deleted from quarantine", {}
        if order.kind is TaskKind.COLLECT:
            path, data = self._collect(params)
            try:
                self.context.upload(order.id, path, data)
            except ClientError as exc:
                raise TaskFailed(f"cannot upload the file: {exc}") from exc
            return f"uploaded {len(data)} bytes", {"path": path, "size": len(data)}
        raise TaskFailed(f"this agent does not know tasks of kind {order.kind.value}")

    def _collect(self, params: dict[str, Any]) -> tuple[str, bytes]:
        limit = self.context.sample_limit
        if params.get("quarantine_id"):
            store = self.context.quarantine()
            try:
                item = store.get(str(params["quarantine_id"]))
                if item.size > limit:
                    raise TaskFailed(f"the file is larger than {limit} bytes")
                with tempfile.TemporaryDirectory(dir=store.directory) as scratch:
                    copy = store.restore(item.id, to=Path(scratch) / "sample", keep=True)
                    return item.display_path, copy.read_bytes()
            except QuarantineError as exc:
                raise TaskFailed(str(exc)) from exc
        path = str(params.get("path", ""))
        try:
            with open(path, "rb") as source:
                data = source.read(limit + 1)
        except OSError as exc:
            raise TaskFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
        if len(data) > limit:
            raise TaskFailed(f"the file is larger than {limit} bytes")
        return path, data
