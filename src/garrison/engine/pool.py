"""Scanning many files on several cores, with a watchdog.

Processes, not threads: unpacking and typing run Python code that holds the GIL. The database is loaded once in
the parent and inherited by forked workers, whose memory-mapped hash tables and compiled rules are shared pages,
so a worker costs little memory.

The engine checks its time limit between objects, but a third-party parser can still hang or crash inside one
call on a hostile file. So the parent watches its workers: a worker that takes much longer than the scan time
limit on one file is killed, one that dies is noticed, the file gets an ``incomplete`` or ``error`` result that
says so, and a fresh worker takes over. A scan of many files therefore always finishes.

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

#: How long past its scan time limit a worker may run before it is killed.
GRACE_SECONDS = 5.0
#: Files handed to a worker at once: fewer messages, while results still come back one file at a time.
BATCH_FILES = 8
BATCH_BYTES = 8 * 1024 * 1024


def _worker(engine: Engine, connection: Connection) -> None:
    while True:
        try:
            batch = connection.recv()
        except EOFError:
            return
        if batch is None:
            return
        for path in batch:
            connection.send(engine.scan_file(path))


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection
    pending: deque[str] = field(default_factory=deque)
    started: float = 0.0


def _stopped(path: str, status: Status, reason: str) -> ScanResult:
    label = printable(path)
    obj = ObjectResult((label,), FileType.BINARY.value, 0, status, reason=reason)
    return ScanResult(label, status, (obj,))


class _Pool:
    def __init__(self, engine: Engine, jobs: int) -> None:
        self.engine = engine
        self.jobs = jobs
        self.context = multiprocessing.get_context("fork")
        self.workers: list[_Worker] = []
        self.limit = engine.limits.max_scan_time + GRACE_SECONDS

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

    def _send(self, worker: _Worker, batch: list[str], retry: bool = True) -> None:
        """Hand a batch to an idle worker; one that died while idle is replaced, not blamed on these files."""
        try:
            worker.connection.send(batch)
        except OSError:
            if not retry:
                raise
            self._retire(worker)
            self._send(self._spawn(), batch, retry=False)
            return
        worker.pending.extend(batch)
        worker.started = time.monotonic()

    def run(self, paths: Iterable[tuple[str, int]]) -> Iterator[ScanResult]:
        queue = iter(paths)
        exhausted = False

        def feed(worker: _Worker) -> None:
            nonlocal exhausted
            batch: list[str] = []
            size = 0
            while not exhausted and len(batch) < BATCH_FILES and size < BATCH_BYTES:
                item = next(queue, None)
                if item is None:
                    exhausted = True
                    break
                batch.append(item[0])
                size += item[1]
            if batch:
                self._send(worker, batch)

        try:
            for _ in range(self.jobs):
                feed(self._spawn())
            while any(w.pending for w in self.workers):
                busy = [w for w in self.workers if w.pending]
                timeout = max(0.0, min(w.started + self.limit for w in busy) - time.monotonic())
                ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy], timeout)
                now = time.monotonic()
                for worker in busy:
                    if worker.connection in ready:
                        try:
                            result = worker.connection.recv()
                        except (EOFError, OSError):
                            result = None
                        if result is not None:
                            worker.pending.popleft()
                            worker.started = now
                            yield result
                            if not worker.pending:
                                feed(worker)
                            continue
                    if worker.process.sentinel in ready and not worker.process.is_alive():
                        yield _stopped(
                            worker.pending.popleft(), Status.ERROR, "the scanner process crashed on this file"
                        )
                    elif now - worker.started > self.limit:
                        yield _stopped(
                            worker.pending.popleft(), Status.INCOMPLETE, "scan time limit reached; the scan was stopped"
                        )
                    else:
                        continue
                    rest = list(worker.pending)
                    self._retire(worker)
                    replacement = self._spawn()
                    if rest:
                        self._send(replacement, rest)
                    else:
                        feed(replacement)
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
    yield from _Pool(engine, jobs).run(paths)
