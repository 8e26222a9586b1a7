"""The agent daemon, composition root: heartbeats, the sender that drains the outbox, and on-demand scans.

Everything with a clock is driven through :meth:`Daemon.step`, which does what is due and returns how long to
wait; :meth:`Daemon.run` loops over it until a stop event is set. The clock, the wait and the random source are
injectable, so tests run the schedule without sleeping.

- **Heartbeat** at the interval the server answers (the server adds the jitter), with the inventory.
- **Sender**: the oldest events from the outbox in batches; only the ids the server acknowledged are deleted, so
  a lost answer means a resend, which the server recognises (events keep their UUID).
- **Server away**: every failure waits with exponential backoff and full jitter (or the server's ``Retry-After``),
  forever; the first success resets it. A refused credential stops the daemon: the agent must enroll again.
- **Scans**: :func:`scan_paths` scans with the engine and puts one detection event per detection in the outbox.
- **Real-time protection** (:mod:`garrison.agent.realtime`, inotify) runs beside the loop in :meth:`Daemon.run`
  when ``realtime_paths`` are set, and is reported in the heartbeat (``realtime_enabled``, dropped files in
  ``errors``).

Scheduled scans, policies and tasks come later.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from garrison.agent import inventory
from garrison.agent.client import (
    AgentClient,
    Backoff,
    ClientError,
    EnrollAgain,
    RequestRejected,
)
from garrison.agent.identity import Identity
from garrison.agent.outbox import Outbox, OutboxError
from garrison.agent.settings import AgentSettings
from garrison.engine import Database, DatabaseError, Detection, Engine, ObjectResult, ScanResult, Status, load_database
from garrison.engine.pool import scan_files
from garrison.engine.walker import Found, Skipped, walk
from garrison.protocol.events import Action, DetectionEvent, EventBatch
from garrison.protocol.heartbeat import HeartbeatResponse

if TYPE_CHECKING:
    from garrison.agent.realtime import RealtimeProtection

log = logging.getLogger(__name__)

DETECTION = "detection"
MIN_INTERVAL = 1.0
MAX_INTERVAL = 24 * 3600.0
MAX_WAIT = 3600.0
_PROBLEM_INDEX = re.compile(r"(?:^|\.)detections\.(\d+)(?:\.|$)")


# -- the engine -----------------------------------------------------------------------------------------------


def load_engine(settings: AgentSettings) -> tuple[Engine, str | None]:
    """The engine over the signature databases in ``settings.signature_dir``, and an error to report, if any.

    With no database there, or one that cannot be loaded, the engine still runs its built-in checks (EICAR).
    """
    directory = settings.signature_dir
    if not (directory.is_dir() and any(directory.iterdir())):
        log.warning("no signature database in %s: only the built-in EICAR check applies", directory)
        return Engine(Database.empty()), None
    try:
        database = load_database([directory], cache_dir=settings.state_dir / "cache")
    except DatabaseError as exc:
        message = f"cannot load the signature database in {directory}: {exc}"
        log.error("%s; scanning with the built-in checks only", message)
        return Engine(Database.empty()), message
    return Engine(database), None


# -- scans ----------------------------------------------------------------------------------------------------


@dataclass
class ScanSummary:
    """What one scan did. ``detections`` lists ``(path, object, name)`` of every detection queued."""

    started_at: datetime
    finished_at: datetime | None = None
    files: int = 0
    infected: int = 0
    errors: int = 0
    skipped: int = 0
    detections: list[tuple[str, str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


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


def scan_paths(
    engine: Engine,
    paths: Iterable[str],
    outbox: Outbox,
    *,
    exclude: Iterable[str] = (),
    jobs: int = 1,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ScanSummary:
    """Scan ``paths`` (files and folders) and put one detection event per detection into ``outbox``.

    A detection that cannot be queued (full disk) is counted in ``problems``; the scan goes on.
    """
    summary = ScanSummary(started_at=now())

    def files() -> Iterator[tuple[str, int]]:
        for item in walk(paths, exclude=exclude):
            if isinstance(item, Found):
                yield item.path, item.size
            elif isinstance(item, Skipped):
                summary.skipped += 1
                if item.error:
                    summary.errors += 1
                    log.warning("not scanned: %s: %s", item.path, item.reason)

    for result in scan_files(engine, files(), jobs):
        summary.files += 1
        if result.status is Status.ERROR:
            summary.errors += 1
        found = result.detections
        if found:
            summary.infected += 1
        for obj, detection in found:
            try:
                outbox.put(DETECTION, detection_event(result, obj, detection, now()))
            except OutboxError as exc:
                summary.problems.append(str(exc))
                log.error("cannot queue the detection in %s: %s", result.path, exc)
                continue
            summary.detections.append((result.path, obj.display_name, detection.name))
            log.warning("detection: %s: %s", obj.display_name, detection.name)
    summary.finished_at = now()
    return summary


# -- the daemon -----------------------------------------------------------------------------------------------


def _rejected_indexes(problems: list[dict[str, Any]]) -> set[int]:
    indexes: set[int] = set()
    for problem in problems:
        match = _PROBLEM_INDEX.search(str(problem.get("where", "")))
        if match:
            indexes.add(int(match.group(1)))
    return indexes


class Daemon:
    """The running agent. Build it in the entry point; call :meth:`run` (or :meth:`step` in tests).

    Args:
        settings: the agent's settings.
        identity: its enrollment.
        outbox: the event queue.
        client: the HTTP client (its transport decides where requests go).
        engine_loader: makes the engine on first use (default :func:`load_engine`).
        clock: monotonic seconds; ``rng``: jitter source.
    """

    def __init__(
        self,
        settings: AgentSettings,
        identity: Identity,
        outbox: Outbox,
        client: AgentClient,
        *,
        engine_loader: Callable[[AgentSettings], tuple[Engine, str | None]] = load_engine,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.outbox = outbox
        self.client = client
        self.backoff = Backoff(settings.backoff_base, settings.backoff_cap, settings.retry_after_cap)
        self._engine_loader = engine_loader
        self._engine: Engine | None = None
        self._engine_error: str | None = None
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._next_heartbeat = clock()
        self._down_until = clock()
        self._failures = 0
        self._more_pending = False
        self._errors: deque[str] = deque(maxlen=16)
        self.discarded = 0
        self.last_error: ClientError | None = None
        self._lock = threading.Lock()
        self.realtime: RealtimeProtection | None = None

    # -- parts ------------------------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine, self._engine_error = self._engine_loader(self.settings)
        return self._engine

    def note(self, problem: str) -> None:
        """Remember a problem to report in the next heartbeat."""
        if problem not in self._errors:
            self._errors.append(problem[:500])

    def heartbeat(self) -> HeartbeatResponse:
        """One heartbeat with the inventory (one attempt; raises :class:`ClientError`)."""
        errors = list(self._errors)
        if self._engine_error:
            errors.insert(0, self._engine_error)
        realtime = self.realtime
        if realtime is not None:
            errors.extend(realtime.take_problems())
        try:
            dropped = self.outbox.dropped
        except OutboxError as exc:
            dropped = 0
            errors.append(str(exc))
        beat = inventory.collect(
            database=self.engine.database,
            status=inventory.load_status(self.settings.status_path),
            realtime_enabled=realtime is not None and realtime.running,
            errors=errors,
            events_dropped=dropped,
        )
        answer = self.client.heartbeat(beat)
        self._errors.clear()  # reported
        return answer

    def send_pending(self, max_batches: int = 20) -> int:
        """Send queued events, oldest first, in batches; delete exactly what the server acknowledged.

        Returns how many were acknowledged. Events this agent cannot send (an unknown kind, or one the server
        rejects as invalid) are dropped and counted in :attr:`discarded`, so that one bad event cannot block the
        queue. Raises :class:`ClientError` when a batch cannot be delivered (the events stay queued).
        """
        sent = 0
        self._more_pending = False
        with self._lock:
            for _ in range(max_batches):
                events = self.outbox.batch(limit=self.settings.batch_size)
                if not events:
                    return sent
                detections: list[DetectionEvent] = []
                unusable = []
                for event in events:
                    if event.kind != DETECTION:
                        unusable.append(event.id)
                        continue
                    try:
                        detections.append(DetectionEvent.model_validate({**event.payload, "id": str(event.id)}))
                    except ValidationError:
                        unusable.append(event.id)
                if unusable:
                    self._discard(unusable, "events this agent cannot send")
                if not detections:
                    continue
                try:
                    ack = self.client.send_events(EventBatch(detections=detections))
                except RequestRejected as exc:
                    bad = [detections[i].id for i in _rejected_indexes(exc.problems) if i < len(detections)]
                    if exc.status != 422 or not bad:
                        raise
                    self._discard(bad, "events the server rejected as invalid")
                    continue
                accepted = set(ack.accepted) & {event.id for event in detections}
                self.outbox.ack(accepted)
                sent += len(accepted)
                if len(accepted) < len(detections):
                    log.warning("the server acknowledged %d of %d events", len(accepted), len(detections))
                    return sent
            self._more_pending = True
        return sent

    def _discard(self, ids: list[Any], why: str) -> None:
        self.outbox.ack(ids)
        self.discarded += len(ids)
        message = f"dropped {len(ids)} {why}"
        log.error("%s", message)
        self.note(message)

    def scan(self, paths: Iterable[str]) -> ScanSummary:
        """Scan now; detections go to the outbox and are sent at the next step."""
        summary = scan_paths(
            self.engine, paths, self.outbox, exclude=self.settings.exclude, jobs=self.settings.scan_jobs
        )
        record_scan(self.settings, summary)
        for problem in summary.problems[:1]:
            self.note(problem)
        return summary

    def start_realtime(self) -> RealtimeProtection | None:
        """Start real-time protection over ``settings.realtime_paths`` (None when there are none, or when it
        cannot start: the problem is logged and reported in the next heartbeat)."""
        from garrison.agent.quarantine import Quarantine, QuarantineError, load_or_create_key  # noqa: PLC0415
        from garrison.agent.realtime import RealtimeError, RealtimeProtection  # noqa: PLC0415

        settings = self.settings
        if not settings.realtime_paths:
            return None
        try:
            store = None
            if settings.realtime_action == Action.QUARANTINE.value:
                store = Quarantine(settings.quarantine_dir, load_or_create_key(settings.quarantine_key_path))
            realtime = RealtimeProtection(
                self.engine,
                self.outbox,
                settings.realtime_paths,
                action=settings.realtime_action,
                quarantine=store,
                exclude=settings.exclude,
                ignore=[settings.state_dir],
                max_pending=settings.realtime_queue,
                debounce=settings.realtime_debounce_seconds,
                backend=settings.realtime_backend,
            )
            realtime.start()
        except (RealtimeError, QuarantineError) as exc:
            message = f"real-time protection is off: {exc}"
            log.error("%s", message)
            self.note(message)
            return None
        self.realtime = realtime
        return realtime

    def stop_realtime(self) -> None:
        realtime, self.realtime = self.realtime, None
        if realtime is not None:
            realtime.stop()

    # -- the schedule -----------------------------------------------------------------------------------------

    def step(self) -> float:
        """Do what is due now (heartbeat, sending); return the seconds until something is due again.

        Raises:
            EnrollAgain: the server refused this agent's credential; nothing will work until it enrolls again.
        """
        now = self._clock()
        if now < self._down_until:
            return self._down_until - now
        try:
            if now >= self._next_heartbeat:
                answer = self.heartbeat()
                interval = min(max(answer.next_seconds, MIN_INTERVAL), MAX_INTERVAL)
                self._next_heartbeat = self._clock() + interval
            self.send_pending()
        except EnrollAgain:
            raise
        except (ClientError, OutboxError) as error:
            wait = (
                self.backoff.wait(error, self._failures, self._rng)
                if isinstance(error, ClientError)
                else (self.backoff.delay(self._failures, self._rng))
            )
            self._failures += 1
            self._down_until = self._clock() + wait
            self.last_error = error if isinstance(error, ClientError) else None
            level = logging.WARNING if getattr(error, "transient", False) else logging.ERROR
            log.log(level, "%s; trying again in %.1f s", error, wait)
            if not isinstance(error, ClientError) or not error.transient:
                self.note(str(error))
            return wait
        if self._failures:
            log.warning("the server is reachable again")
        self._failures = 0
        self.last_error = None
        if self._more_pending:
            return 0.0
        return max(0.0, self._next_heartbeat - self._clock())

    def run(self, stop: threading.Event, wait: Callable[[float], object] | None = None) -> None:
        """Step until ``stop`` is set; between steps, ``wait(seconds)`` (default: ``stop.wait``, so a stop set
        from a signal handler ends the wait at once). :class:`EnrollAgain` ends the loop by propagating."""
        wait = wait or stop.wait
        log.info("agent %s reporting to %s", self.identity.agent_id, self.identity.server_url)
        self.start_realtime()
        try:
            while not stop.is_set():
                delay = self.step()
                if stop.is_set():
                    break
                wait(min(delay, MAX_WAIT))
        finally:
            self.stop_realtime()
        log.info("agent stopped")


def record_scan(settings: AgentSettings, summary: ScanSummary) -> None:
    """Remember the scan for the heartbeats (``status.json``)."""
    status = inventory.Status(
        last_scan_at=summary.finished_at or summary.started_at,
        last_scan_files=summary.files,
        last_scan_detections=len(summary.detections),
        last_scan_errors=summary.errors,
    )
    try:
        inventory.save_status(settings.status_path, status)
    except OSError as exc:
        log.warning("cannot write %s: %s", settings.status_path, exc.strerror or exc)


def open_outbox(settings: AgentSettings) -> Outbox:
    return Outbox(Path(settings.outbox_path), max_bytes=settings.outbox_max_bytes)
