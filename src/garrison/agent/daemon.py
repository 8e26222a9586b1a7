"""The agent daemon, composition root: heartbeats, the sender that drains the outbox, and on-demand scans.

Everything with a clock is driven through :meth:`Daemon.step`, which does what is due and returns how long to
wait; :meth:`Daemon.run` loops over it until a stop event is set. The clock, the wait and the random source are
injectable, so tests run the schedule without sleeping.

- **Heartbeat** at the interval the server answers (the server adds the jitter), with the inventory.
- **Sender**: the oldest events from the outbox in batches; only the ids the server acknowledged are deleted, so
  a lost answer means a resend, which the server recognises (events keep their UUID).
- **Server away**: every failure waits with exponential backoff and full jitter (or the server's ``Retry-After``),
  forever; the first success resets it. A refused credential stops the daemon: the agent must enroll again.
- **Policy**: each heartbeat answer names the policy revision to apply; when it is not the agent's, the agent
  fetches the policy (:mod:`garrison.agent.policy`), saves it, and applies it: what to scan and exclude, the
  action on detection, real-time protection (restarted when it changes), the schedule, limits, the allow-list.
- **Tasks**: the heartbeat answer carries the agent's pending tasks; :mod:`garrison.agent.tasks` runs each once
  and queues its result in the outbox.
- **Scheduled scans** (:mod:`garrison.agent.schedule`) and tasks run one at a time on a worker thread beside the
  loop, so a long scan never delays heartbeats; tests drive them with :meth:`Daemon.run_jobs`.
- **Scans**: :func:`scan_paths` scans with the engine, acts on detected files (report, quarantine, delete) and
  puts one detection event per detection in the outbox.
- **Real-time protection** (:mod:`garrison.agent.realtime`, fanotify or inotify) runs beside the loop in
  :meth:`Daemon.run` when ``realtime_paths`` are set, and is reported in the heartbeat (``realtime_enabled``,
  its back end, dropped files in ``errors``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import queue
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

from garrison import __version__
from garrison.agent import inventory, software, updater
from garrison.agent import policy as policies
from garrison.agent.client import (
    AgentClient,
    Backoff,
    ClientError,
    EnrollAgain,
    RequestRejected,
)
from garrison.agent.detections import DETECTION, TASK_RESULT, handle, not_allowed
from garrison.agent.identity import Identity
from garrison.agent.outbox import Outbox, OutboxError
from garrison.agent.quarantine import Quarantine, load_or_create_key
from garrison.agent.schedule import Scheduler
from garrison.agent.settings import AgentSettings
from garrison.agent.tasks import Ledger, TaskContext, TaskFailed, TaskRunner
from garrison.atomicfile import write_atomic
from garrison.engine import Database, DatabaseError, Engine, Status, load_database
from garrison.engine.pool import scan_files
from garrison.engine.results import printable
from garrison.engine.walker import Found, Skipped, walk
from garrison.protocol.events import Action, DetectionEvent, EventBatch
from garrison.protocol.heartbeat import HeartbeatResponse
from garrison.protocol.policy import PolicyDocument, ScheduledScan
from garrison.protocol.tasks import TaskResult
from garrison.protocol.updates import UpdateOrder

if TYPE_CHECKING:
    from garrison.agent.realtime import RealtimeProtection

log = logging.getLogger(__name__)

MIN_INTERVAL = 1.0
MAX_INTERVAL = 24 * 3600.0
MAX_WAIT = 3600.0
EVENT_MODELS: dict[str, type[DetectionEvent] | type[TaskResult]] = {DETECTION: DetectionEvent, TASK_RESULT: TaskResult}
JOB_POLL = 2.0  # while jobs run, results are sent this soon after they are queued
_PROBLEM_INDEX = re.compile(r"(?:^|\.)detections\.(\d+)(?:\.|$)")


# -- the engine -----------------------------------------------------------------------------------------------


def load_engine(settings: AgentSettings) -> tuple[Engine, str | None]:
    """The engine over the installed signature release (see :mod:`.updater`) and the databases in
    ``settings.signature_dir``, and an error to report, if any.

    An installed release that does not load gives way to the last good one. With no database at all, or none that
    loads, the engine still runs its built-in checks (EICAR).
    """
    local = settings.signature_dir
    extra = updater.database_paths(settings, None)
    cache = settings.state_dir / "cache"
    problems: list[str] = []
    for release in updater.release_dirs(settings.updates_dir):
        try:
            paths = updater.database_paths(settings, release)
            return Engine(load_database(paths, cache_dir=cache)), "; ".join(problems) or None
        except DatabaseError as exc:
            problems.append(f"cannot load signature release {release.name}: {exc}")
            log.error("%s; trying the last good one", problems[-1])
    if not extra:
        if not problems:
            log.warning("no signature database in %s: only the built-in EICAR check applies", local)
        return Engine(Database.empty()), "; ".join(problems) or None
    try:
        database = load_database(extra, cache_dir=cache)
    except DatabaseError as exc:
        message = f"cannot load the signature database in {local}: {exc}"
        log.error("%s; scanning with the built-in checks only", message)
        return Engine(Database.empty()), "; ".join([*problems, message])
    return Engine(database), "; ".join(problems) or None


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


def scan_paths(
    engine: Engine,
    paths: Iterable[str],
    outbox: Outbox,
    *,
    exclude: Iterable[str] = (),
    jobs: int = 1,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    action: Action = Action.REPORT,
    quarantine: Quarantine | None = None,
    allowed: frozenset[str] = frozenset(),
) -> ScanSummary:
    """Scan ``paths`` (files and folders), apply ``action`` to each infected file and put one detection event per
    detection into ``outbox``. Files whose SHA-256 is in ``allowed`` are not detections.

    A detection that cannot be queued (full disk) is counted in ``problems``; the scan goes on.
    """
    summary = ScanSummary(started_at=now())
    paths_by_result: dict[str, str] = {}  # the path scanned, by the printable path its result carries

    def problem(message: str) -> None:
        summary.problems.append(message)
        log.error("%s", message)

    def files() -> Iterator[tuple[str, int]]:
        for item in walk(paths, exclude=exclude):
            if isinstance(item, Found):
                if action is not Action.REPORT:
                    paths_by_result[printable(item.path)] = item.path
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
        found = not_allowed(result, allowed)
        if not found:
            continue
        summary.infected += 1
        queued = handle(
            Path(paths_by_result.pop(result.path, result.path)),
            result,
            found,
            outbox,
            action=action,
            quarantine=quarantine,
            when=now(),
            problem=problem,
        )
        for obj, detection, _event in queued:
            summary.detections.append((result.path, obj.display_name, detection.name))
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
        clock: monotonic seconds; ``rng``: jitter source; ``wallclock``: the local time, for schedules.
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
        wallclock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    ) -> None:
        self.base_settings = settings
        self.policy_store = policies.PolicyStore(settings.policy_path)
        self.settings = policies.apply(settings, self.policy_store.document)
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
        self._realtime_wanted = False
        self._wallclock = wallclock
        self.scheduler = Scheduler(settings.schedule_path, self._rng)
        self.scheduler.set(policies.schedules(self.policy_store.document), wallclock())
        self._restored = _load_hashes(settings.state_dir / "restored.json")
        self._quarantine: Quarantine | None = None
        self.tasks = TaskRunner(
            Ledger(settings.tasks_path),
            outbox,
            TaskContext(
                scan=self._task_scan,
                update=self._task_update,
                quarantine=self.quarantine_store,
                # late-bound: a command that only scans builds the daemon without a client
                upload=lambda task_id, path, data: self.client.upload_sample(task_id, path, data),  # noqa: PLW0108
                restored=self._remember_restored,
            ),
        )
        # A new agent version on trial proves itself healthy with its first heartbeat, or is rolled back.
        self.trial = software.TrialWatch(settings.state_dir, __version__, clock=clock)
        self._updater: updater.SignatureUpdater | None = None
        self._order: UpdateOrder | None = None
        self._update_queued = False
        self.restart_into: str | None = None  # an agent version staged to restart into
        self._jobs: queue.Queue[Callable[[], object]] = queue.Queue()
        self._jobs_open = 0  # queued or running, or finished with results not sent yet
        self._jobs_finished = 0

    # -- parts ------------------------------------------------------------------------------------------------

    @property
    def allowed(self) -> frozenset[str]:
        """Files never treated as detections: the fleet-wide allow-list and the files restored here."""
        return self.policy_store.allowed | self._restored

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine, self._engine_error = self._engine_loader(self.settings)
            self._engine.limits = policies.limits(self.policy_store.document)
        return self._engine

    def reload_engine(self) -> dict[str, Any]:
        """Load the signature databases again (real-time protection switches to them); says what is loaded."""
        self._engine = None
        engine = self.engine
        if self.realtime is not None:
            self.realtime.engine = engine
        version, date = inventory.signature_info(engine.database)
        if self._engine_error:
            raise TaskFailed(self._engine_error)
        return {"signature_version": version, "signature_date": date.isoformat() if date else None}

    @property
    def updater(self) -> updater.SignatureUpdater:
        if self._updater is None:
            state_dir = self.settings.state_dir
            self._updater = updater.SignatureUpdater(
                self.settings,
                self.client,
                running_version=__version__,
                stage_software=lambda data, version: software.stage(state_dir, data, version),
                software_refused=lambda version: software.refused(state_dir, version),
                rng=self._rng,
            )
        return self._updater

    def update(self, *, forced: bool = False) -> dict[str, Any]:
        """Look for a newer signature release (and agent version) and install it; says what happened.

        Raises:
            updater.UpdateFailed: nothing was installed (recorded, reported and backed off by the updater).
        """
        try:
            outcome = self.updater.check(self._order)
        finally:
            with self._lock:
                self._update_queued = False
        if outcome.installed is not None:
            self.reload_engine()
        if outcome.software is not None:
            self.restart_into = outcome.software
        return updater.as_dict(outcome) | {"release": self.updater.status().release}

    def _task_update(self) -> dict[str, Any]:
        try:
            result = self.update(forced=True)
        except updater.UpdateFailed as exc:
            raise TaskFailed(str(exc)) from exc
        return result | self.reload_engine()

    def _maybe_update(self) -> None:
        """Queue an update check when one is due (the interval passed, or the server names something newer)."""
        with self._lock:
            if self._update_queued:
                return
        if not self.updater.due(self._order):
            return
        with self._lock:
            self._update_queued = True

        def job() -> None:
            # A failure is recorded in the update state and reported with the next heartbeat.
            with contextlib.suppress(updater.UpdateFailed):
                self.update()

        self._enqueue(job)

    def quarantine_store(self) -> Quarantine:
        if self._quarantine is None:
            settings = self.settings
            self._quarantine = Quarantine(settings.quarantine_dir, load_or_create_key(settings.quarantine_key_path))
        return self._quarantine

    def _remember_restored(self, sha256: str) -> None:
        self._restored = self._restored | {sha256}
        try:
            write_atomic(self.settings.state_dir / "restored.json", json.dumps(sorted(self._restored)).encode(), 0o600)
        except OSError as exc:
            self.note(f"cannot save the list of restored files: {exc.strerror or exc}")
        if self.realtime is not None:
            self.realtime.allowed = self.allowed

    def apply_policy(self, document: PolicyDocument) -> None:
        """Save and apply a policy from the server."""
        before = self.settings
        self.policy_store.save(document)
        self.settings = policies.apply(self.base_settings, document)
        if self._engine is not None:
            self._engine.limits = policies.limits(document)
        self.scheduler.set(policies.schedules(document), self._wallclock())
        log.info("applying policy %s", document.revision)
        watched = ("realtime_paths", "realtime_action", "exclude")
        if self._realtime_wanted and any(getattr(before, f) != getattr(self.settings, f) for f in watched):
            self.stop_realtime()
            self.start_realtime()
        elif self.realtime is not None:
            self.realtime.allowed = self.allowed

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
        beat.policy_revision = self.policy_store.revision
        status = self.updater.status()
        beat.updates = status
        if status.release is not None and status.published_at is not None:
            # The age that counts is that of the release: when the server published it.
            beat.signature_version = f"release {status.release}"
            beat.signature_date = status.published_at
        beat.realtime_backend = (realtime.backend or "") if realtime is not None else ""
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
                results: list[TaskResult] = []
                unusable = []
                for event in events:
                    model = EVENT_MODELS.get(event.kind)
                    try:
                        if model is None:
                            raise ValueError(event.kind)
                        parsed = model.model_validate({**event.payload, "id": str(event.id)})
                    except (ValidationError, ValueError):
                        unusable.append(event.id)
                        continue
                    if isinstance(parsed, DetectionEvent):
                        detections.append(parsed)
                    else:
                        results.append(parsed)
                if unusable:
                    self._discard(unusable, "events this agent cannot send")
                if not detections and not results:
                    continue
                try:
                    ack = self.client.send_events(EventBatch(detections=detections, task_results=results))
                except RequestRejected as exc:
                    bad = [detections[i].id for i in _rejected_indexes(exc.problems) if i < len(detections)]
                    if exc.status != 422 or not bad:
                        raise
                    self._discard(bad, "events the server rejected as invalid")
                    continue
                offered = {event.id for event in detections} | {result.id for result in results}
                accepted = set(ack.accepted) & offered
                self.outbox.ack(accepted)
                sent += len(accepted)
                if len(accepted) < len(offered):
                    log.warning("the server acknowledged %d of %d events", len(accepted), len(offered))
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
        """Scan now with the policy's action and exclusions; detections go to the outbox, sent at the next step."""
        settings = self.settings
        action = Action(settings.scan_action)
        summary = scan_paths(
            self.engine,
            paths,
            self.outbox,
            exclude=settings.exclude,
            jobs=settings.scan_jobs,
            action=action,
            quarantine=self.quarantine_store() if action is Action.QUARANTINE else None,
            allowed=self.allowed,
        )
        record_scan(self.settings, summary)
        for problem in summary.problems[:1]:
            self.note(problem)
        return summary

    def _task_scan(self, paths: list[str]) -> dict[str, Any]:
        summary = self.scan(paths or self.settings.watch_paths)
        return {
            "files": summary.files,
            "infected": summary.infected,
            "errors": summary.errors,
            "skipped": summary.skipped,
            "detections": [name for _path, _obj, name in summary.detections[:20]],
        }

    def scheduled_scan(self, schedule: ScheduledScan) -> ScanSummary:
        log.info("scheduled scan (%s) starts", schedule.cron)
        summary = self.scan(schedule.paths or self.settings.watch_paths)
        log.info("scheduled scan done: %d files, %d infected", summary.files, summary.infected)
        return summary

    # -- background work --------------------------------------------------------------------------------------

    def run_jobs(self) -> int:
        """Run the queued jobs (tasks, scheduled scans) now, in this thread; returns how many ran."""
        ran = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return ran
            self._run_job(job)
            ran += 1

    def _enqueue(self, job: Callable[[], object]) -> None:
        with self._lock:
            self._jobs_open += 1
        self._jobs.put(job)

    def _run_job(self, job: Callable[[], object]) -> None:
        try:
            job()
        except Exception as exc:  # a job must never take the agent down
            log.exception("background job failed")
            self.note(f"background job failed: {exc}")
        finally:
            with self._lock:
                self._jobs_finished += 1

    def _work_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                job = self._jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            self._run_job(job)

    def _follow(self, answer: HeartbeatResponse) -> None:
        """Fetch the policy when the server names a new one; queue new tasks."""
        if answer.policy_revision and answer.policy_revision != self.policy_store.revision:
            self.apply_policy(self.client.policy())
        for _ in range(self.tasks.accept(answer.tasks)):
            self._enqueue(self.tasks.run_next)
        self._order = answer.updates
        self._maybe_update()

    def start_realtime(self) -> RealtimeProtection | None:
        """Start real-time protection over ``settings.realtime_paths`` (None when there are none, or when it
        cannot start: the problem is logged and reported in the next heartbeat)."""
        from garrison.agent.quarantine import Quarantine, QuarantineError  # noqa: PLC0415
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
            realtime.allowed = self.allowed
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
        # Scheduled scans run whether the server answers or not.
        for schedule in self.scheduler.due(self._wallclock()):
            self._enqueue(functools.partial(self.scheduled_scan, schedule))
        until_scan = self.scheduler.seconds_until_next(self._wallclock())
        if self.trial.expired():
            self.trial.give_up()
            raise software.RestartRequested("this agent version did not become healthy in time")
        if self.restart_into is not None and not self._jobs_open:
            raise software.RestartRequested(f"agent version {self.restart_into} is staged")
        now = self._clock()
        if now < self._down_until:
            return _sooner(self._down_until - now, until_scan)
        try:
            if now >= self._next_heartbeat:
                answer = self.heartbeat()
                if self.trial.active:
                    self.trial.healthy()
                interval = min(max(answer.next_seconds, MIN_INTERVAL), MAX_INTERVAL)
                self._next_heartbeat = self._clock() + interval
                self._follow(answer)
            finished = self._jobs_finished
            self.send_pending()
            with self._lock:
                self._jobs_open -= finished
                self._jobs_finished -= finished
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
            return _sooner(wait, until_scan)
        if self._failures:
            log.warning("the server is reachable again")
        self._failures = 0
        self.last_error = None
        if self._more_pending:
            return 0.0
        if self._jobs_open:
            return min(JOB_POLL, max(0.0, self._next_heartbeat - self._clock()))  # send results soon after
        return _sooner(max(0.0, self._next_heartbeat - self._clock()), until_scan)

    def run(self, stop: threading.Event, wait: Callable[[float], object] | None = None) -> None:
        """Step until ``stop`` is set; between steps, ``wait(seconds)`` (default: ``stop.wait``, so a stop set
        from a signal handler ends the wait at once). :class:`EnrollAgain` ends the loop by propagating."""
        wait = wait or stop.wait
        log.info("agent %s reporting to %s", self.identity.agent_id, self.identity.server_url)
        self._realtime_wanted = True
        self.start_realtime()
        self.tasks.recover()
        worker = threading.Thread(target=self._work_loop, args=(stop,), name="garrison-jobs", daemon=True)
        worker.start()
        try:
            while not stop.is_set():
                delay = self.step()
                if stop.is_set():
                    break
                wait(min(delay, MAX_WAIT))
        finally:
            self.stop_realtime()
            worker.join(timeout=5)
        log.info("agent stopped")


def _sooner(wait: float, other: float | None) -> float:
    return wait if other is None else min(wait, other)


def _load_hashes(path: Path) -> frozenset[str]:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return frozenset()
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return frozenset()
    return frozenset(str(item) for item in loaded) if isinstance(loaded, list) else frozenset()


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
