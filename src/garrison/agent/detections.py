"""What every kind of scan does with a detection: skip allow-listed files, act on the file (report, quarantine or
delete), and queue one event per detection in the outbox, saying what was done and whether it worked.

Scheduled and on-demand scans, "scan now" tasks and real-time protection all go through :func:`handle`, so a
detection reads the same on the server whichever found it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from garrison.agent.outbox import Outbox, OutboxError
from garrison.agent.quarantine import Quarantine, QuarantineError, delete_file
from garrison.engine import Detection, ObjectResult, ScanResult
from garrison.protocol.events import Action

log = logging.getLogger(__name__)

DETECTION = "detection"
TASK_RESULT = "task_result"


def detection_event(result: ScanResult, obj: ObjectResult, detection: Detection, when: datetime) -> dict[str, Any]:
    """The outbox payload of one detection: a :class:`DetectionEvent` without its id (the outbox gives it)."""
    return {
        "occurred_at": when.isoformat(),
        "path": result.path[:4096],
        "chain": list(obj.chain)[:32],
        "name": detection.name[:255],
        "kind": detection.kind.value[:32],
        "database": detection.database[:1024] if detection.database else None,
        "signature": detection.signature[:255] if detection.signature else None,
        "md5": obj.md5,
        "sha256": obj.sha256,
        "size": obj.size,
        "action": Action.REPORT.value,
    }


def not_allowed(result: ScanResult, allowed: Collection[str]) -> list[tuple[ObjectResult, Detection]]:
    """The detections of ``result`` that stand: none when the file itself is allow-listed, else those in objects
    (archive members, say) whose SHA-256 is not allow-listed."""
    found = result.detections
    if not found or not allowed:
        return found
    root = result.objects[0].sha256 if result.objects else None
    if root in allowed:
        return []
    return [(obj, detection) for obj, detection in found if obj.sha256 not in allowed]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What was done with a detected file."""

    action: Action
    ok: bool = True
    detail: str | None = None
    quarantine_id: str | None = None


def act(path: Path, action: Action, quarantine: Quarantine | None, detection: dict[str, Any]) -> Outcome:
    """Apply ``action`` to the file at ``path``; a failure is an :class:`Outcome` that says why, never an error."""
    if action is Action.REPORT:
        return Outcome(action)
    try:
        if action is Action.QUARANTINE:
            if quarantine is None:
                return Outcome(action, False, "no quarantine store")
            item = quarantine.quarantine(path, detection)
            return Outcome(action, True, f"quarantined as {item.id}", item.id)
        deleted = delete_file(path)
        return Outcome(action, True, f"deleted ({deleted.size} bytes, SHA-256 {deleted.sha256})")
    except QuarantineError as exc:
        log.error("cannot %s %s: %s", action.value, path, exc)
        return Outcome(action, False, str(exc))


def handle(
    path: Path,
    result: ScanResult,
    found: list[tuple[ObjectResult, Detection]],
    outbox: Outbox,
    *,
    action: Action,
    quarantine: Quarantine | None,
    when: datetime,
    problem: Callable[[str], None],
) -> list[tuple[ObjectResult, Detection, dict[str, Any]]]:
    """Act once on the file at ``path`` (scanned into ``result``) and queue one event per detection in ``found``;
    returns each detection queued with its event. A detection that cannot be queued (full disk) is passed to
    ``problem``."""
    if not found:
        return []
    first_obj, first = found[0]
    outcome = act(path, action, quarantine, detection_event(result, first_obj, first, when))
    events = []
    for obj, detection in found:
        payload = detection_event(result, obj, detection, when)
        payload.update(
            action=outcome.action.value,
            action_ok=outcome.ok,
            action_detail=outcome.detail[:1024] if outcome.detail else None,
            quarantine_id=outcome.quarantine_id,
        )
        try:
            outbox.put(DETECTION, payload)
        except OutboxError as exc:
            problem(f"cannot queue the detection in {result.path}: {exc}")
            continue
        events.append((obj, detection, payload))
        log.warning("detection: %s: %s (%s)", obj.display_name, detection.name, outcome.detail or "reported")
    return events
