"""Scanning many files on several cores, with a watchdog.

Processes, not threads: unpacking and typing run Python code that holds the GIL. The database is loaded once in
the parent and inherited by forked workers, whose memory-mapped hash tables and compiled rules are shared pages,
so a worker costs little memory.

Workers get files in batches and send results back in small groups, which keeps messaging cheap. The engine
checks its time limit between objects, but a third-party parser can still hang or crash inside one call on a
hostile file. So the parent watches its workers: one that stays silent much longer than the scan time limit is
killed, one that dies is noticed, and a fresh worker takes over. The files that worker still held are then
scanned again one at a time ("isolated"), so that the file at fault, if there is one, is found for certain and
gets an ``incomplete`` or ``error`` result that says what happened, while the others get their normal results.
Every file gets exactly one result, and a scan of many files always finishes.

Where ``fork`` is unavailable (Windows, macOS by default), files are scanned one by one in this process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from garrison.engine.filetype import FileType
from garrison.engine.results import ObjectResult, ScanResult, Status, printable
from garrison.engine.scanner import Engine

#: How long past its scan time limit a silent worker may run before it is killed.
GRACE_SECONDS = 5.0
#: Files handed to a worker at once.
BATCH_FILES = 16
BATCH_BYTES = 16 * 1024 * 1024
#: A worker sends what it has finished at least this often.
SEND_INTERVAL = 0.05

CRASHED = "the scanner process crashed on this file"
STOPPED = "scan time limit reached; the scan was stopped"


def _worker(engine: Engine, connection: Connection) -> None:
    while True:
        try:
            batch = connection.recv()
        except EOFError:
            return
        if batch is None:
            return
        done: list[ScanResult] = []
        last = time.monotonic()
        for path in batch:
            done.append(engine.scan_file(path))
            if time.monotonic() - last >= SEND_INTERVAL:
                connection.send(done)
                done = []
                last = time.monotonic()
        if done:
            connection.send(done)


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection
    pending: deque[str] = field(default_factory=deque)
    heard: float = 0.0
    isolated: bool = False


def _stopped(path: str, status: Status, reason: str) -> ScanResult:
    label = printable(path)
    obj = ObjectResult((label,), FileType.BINARY.value, 0, status, reason=reason)
    return ScanResult(label, status, (obj,))


class _Pool:
    def __init__(self, engine: Engine, jobs: int, paths: Iterable[tuple[str, int]]) -> None:
        self.engine = engine
        self.jobs = jobs
        self.context = multiprocessing.get_context("fork")
        self.workers: list[_Worker] = []
        self.limit = engine.limits.max_scan_time + GRACE_SECONDS + SEND_INTERVAL
        self.queue = iter(paths)
        self.exhausted = False
        self.isolate: deque[str] = deque()

    def _spawn(self) -> _Worker:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(self.engine, child), daemon=True)
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self.workers.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        self.workers.remove(worker)
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        worker.connection.close()

    def _next_batch(self) -> tuple[list[str], bool]:
        if self.isolate:
            return [self.isolate.popleft()], True
        batch: list[str] = []
        size = 0
        while not self.exhausted and len(batch) < BATCH_FILES and size < BATCH_BYTES:
            item = next(self.queue, None)
            if item is None:
                self.exhausted = True
                break
            batch.append(item[0])
            size += item[1]
        return batch, False

    def _feed(self, worker: _Worker) -> None:
        batch, isolated = self._next_batch()
        if not batch:
            return
        try:
            worker.connection.send(batch)
        except OSError:
            # The worker died while idle: not these files' fault. Replace it and hand them to the new one.
            self._retire(worker)
            worker = self._spawn()
            worker.connection.send(batch)
        worker.pending.extend(batch)
        worker.heard = time.monotonic()
        worker.isolated = isolated

    def _fail(self, worker: _Worker, status: Status, reason: str) -> Iterator[ScanResult]:
        """A worker died or hung: blame its file if it held only one, else scan its files again one by one."""
        held = list(worker.pending)
        if worker.isolated and len(held) == 1:
            yield _stopped(held[0], status, reason)
        else:
            self.isolate.extendleft(reversed(held))
        self._retire(worker)
        self._feed(self._spawn())

    def run(self) -> Iterator[ScanResult]:
        try:
            for _ in range(self.jobs):
                self._feed(self._spawn())
            while any(w.pending for w in self.workers):
                busy = [w for w in self.workers if w.pending]
                timeout = max(0.0, min(w.heard + self.limit for w in busy) - time.monotonic())
                ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy], timeout)
                for worker in busy:
                    if worker.connection in ready:
                        try:
                            results: list[ScanResult] = worker.connection.recv()
                        except (EOFError, OSError):
                            results = []
                        if results:
                            for result in results:
                                worker.pending.popleft()
                                yield result
                            worker.heard = time.monotonic()
                            if not worker.pending:
                                self._feed(worker)
                            continue
                    if worker.process.sentinel in ready and not worker.process.is_alive():
                        yield from self._fail(worker, Status.ERROR, CRASHED)
                    elif time.monotonic() - worker.heard > self.limit:
                        yield from self._fail(worker, Status.INCOMPLETE, STOPPED)
        finally:
            for worker in self.workers:
                with contextlib.suppress(OSError):
                    worker.connection.send(None)
            for worker in list(self.workers):
                worker.process.join(timeout=1.0)
                self._retire(worker)


def scan_files(engine: Engine, paths: Iterable[tuple[str, int]], jobs: int | None = None) -> Iterator[ScanResult]:
    """Scan every ``(path, size)``, yielding results as they finish (not in input order when ``jobs`` > 1).

    Sizes only balance the work between processes; they need not be exact.
    """
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        for path, _ in paths:
            yield engine.scan_file(path)
        return
    yield from _Pool(engine, jobs, paths).run()
