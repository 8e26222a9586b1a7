"""Real-time protection on Linux: scan files as they are written or opened, with a bounded, debounced queue.

Two back ends (``backend``: ``auto``, ``fanotify`` or ``inotify``) feed the same queue and the same worker:

- **fanotify** (:mod:`garrison.agent.fanotify`), used by ``auto`` when ``fanotify_init`` succeeds, which needs
  CAP_SYS_ADMIN: files are scanned when *written* (``FAN_CLOSE_WRITE``) and when *opened* (``FAN_OPEN``; a file
  already scanned clean and unchanged since is not rescanned). Mount marks cover each protected tree whole, with no
  per-directory watch; events are filtered to the protected directories, and the agent's own opens are ignored.
  Notification events only: an open is seen as it happens, not blocked until the scan is done (permission events
  are left for later, see that module).
- **inotify** (through :mod:`ctypes` on the C library: no dependency, a few calls), the fallback when fanotify
  cannot start (EPERM without the capability, ENOSYS/EINVAL in some containers; ``auto`` logs why at INFO):
  ``IN_CLOSE_WRITE`` (a file written and closed) and ``IN_MOVED_TO`` (a file moved or renamed into a watched
  directory). Watches are recursive; a directory created or moved in later is watched too, and the files already in
  it are queued (they may have been written before its watch existed). inotify does not see reads.

:attr:`RealtimeProtection.backend` says which one runs (for the heartbeat and the logs).

- **Debounce**: a path is scanned ``debounce`` seconds after its last event, so a file written and closed many
  times in a short while is scanned once. A file that keeps changing is still scanned at least every
  ``MAX_DELAY_FACTOR × debounce`` seconds.
- **Bounded queue**: at most ``max_pending`` paths wait; when it is full, the path waiting longest is dropped and
  counted (:attr:`PendingQueue.dropped`). The count is reported in the heartbeat's ``errors``, and so is an
  overflow of the kernel's own event queue (inotify's or fanotify's).
- **Action on detection**: ``report``, ``quarantine`` (into the agent's encrypted store) or ``delete``; the
  detection event says which, whether it worked (``action_ok``) and what happened (``action_detail``).

:class:`RealtimeProtection` runs two threads (the event reader and the scanning worker); its synchronous parts
(:meth:`RealtimeProtection.read_events`, :meth:`RealtimeProtection.scan_due`) can also be driven by tests with
an injected clock.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from garrison.agent.detections import handle, not_allowed
from garrison.agent.fanotify import CleanCache, FanotifyError, FanotifyWatcher, file_identity, protected_prefixes
from garrison.agent.outbox import Outbox
from garrison.agent.quarantine import Quarantine
from garrison.engine import Engine, Status
from garrison.engine.walker import Found, walk
from garrison.protocol.events import Action

log = logging.getLogger(__name__)

# inotify constants (linux/inotify.h)
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_CLOEXEC = 0o2000000  # O_CLOEXEC on Linux (literal: this module must import anywhere)
IN_NONBLOCK = 0o4000

WATCH_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len
MAX_DELAY_FACTOR = 5.0

Backend = Literal["auto", "fanotify", "inotify"]
BACKENDS: tuple[str, ...] = get_args(Backend)


class RealtimeError(Exception):
    """Real-time protection cannot start (no inotify, no fanotify when it was required, nothing to watch)."""


# -- inotify ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InotifyEvent:
    wd: int
    mask: int
    cookie: int
    name: bytes


class Inotify:
    """A thin inotify wrapper over the C library (Linux only)."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
            self._init1 = libc.inotify_init1
            self._add = libc.inotify_add_watch
            self._rm = libc.inotify_rm_watch
        except (OSError, AttributeError) as exc:
            raise RealtimeError(f"inotify is not available on this system: {exc}") from exc
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]
        fd = self._init1(IN_CLOEXEC | IN_NONBLOCK)
        if fd < 0:
            err = ctypes.get_errno()
            raise RealtimeError(f"cannot start inotify: {os.strerror(err)}")
        self.fd: int = fd

    def add_watch(self, path: bytes, mask: int) -> int:
        wd = self._add(self.fd, path, mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fsdecode(path))
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        self._rm(self.fd, wd)  # EINVAL when the kernel already removed it: nothing to do

    def read(self) -> list[InotifyEvent]:
        """The events ready now (none when there are none: the descriptor is non-blocking)."""
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return []
        events = []
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, cookie, length = _EVENT.unpack_from(data, offset)
            offset += _EVENT.size
            name = data[offset : offset + length].rstrip(b"\0")
            offset += length
            events.append(InotifyEvent(wd, mask, cookie, name))
        return events

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# -- the queue ----------------------------------------------------------------------------------------------------


class PendingQueue:
    """Paths waiting to be scanned, at most ``max_pending``, each due ``debounce`` seconds after its last event.

    Thread-safe. Adding a path that is already waiting moves its due time (and its place: it becomes the newest);
    adding one to a full queue drops the path that has waited longest and counts it in :attr:`dropped`.
    """

    def __init__(self, max_pending: int, debounce: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self.debounce = debounce
        self._clock = clock
        self._items: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # path -> (first seen, due)
        self._changed = threading.Condition()
        self.dropped = 0

    def add(self, path: bytes) -> None:
        now = self._clock()
        with self._changed:
            if path in self._items:
                first, _ = self._items.pop(path)
                due = min(now + self.debounce, first + MAX_DELAY_FACTOR * self.debounce)
            else:
                first, due = now, now + self.debounce
                while len(self._items) >= self.max_pending:
                    lost, _ = self._items.popitem(last=False)
                    self.dropped += 1
                    log.debug("real-time queue full: dropped %r", lost)
            self._items[path] = (first, due)
            self._changed.notify_all()

    def pop_due(self) -> list[bytes]:
        """Remove and return every path whose time has come, oldest first."""
        now = self._clock()
        with self._changed:
            due = [path for path, (_, when) in self._items.items() if when <= now]
            for path in due:
                del self._items[path]
            return due

    def next_due(self) -> float | None:
        """Seconds until the next path is due (0 when one is), or None when nothing waits."""
        with self._changed:
            if not self._items:
                return None
            return max(0.0, min(when for _, when in self._items.values()) - self._clock())

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds, or until a path is added or :meth:`wake` is called."""
        with self._changed:
            self._changed.wait(timeout)

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)


# -- real-time protection -----------------------------------------------------------------------------------------


@dataclass
class RealtimeStats:
    scanned: int = 0
    detections: int = 0
    errors: int = 0
    overflows: int = 0


class RealtimeProtection:
    """Watch ``paths`` and scan what is written there; act on detections and queue them in ``outbox``.

    Args:
        engine: the scanning engine (used from the worker thread only).
        outbox: where detection events go.
        paths: directories (watched recursively) to protect.
        action: what to do with a detected file: ``report``, ``quarantine`` or ``delete``.
        quarantine: the store for the ``quarantine`` action (required for it).
        exclude: glob patterns not to scan (as for on-demand scans).
        ignore: directories whose files are never scanned (the agent's own state directory).
        max_pending, debounce: the queue's bound and debounce, see :class:`PendingQueue`.
        clock: monotonic seconds; ``now``: the events' time stamps.
        backend: ``fanotify``, ``inotify``, or ``auto``: fanotify when it can start, else inotify (see the module).
    """

    def __init__(
        self,
        engine: Engine,
        outbox: Outbox,
        paths: Iterable[str | os.PathLike[str]],
        *,
        action: Action | str = Action.REPORT,
        quarantine: Quarantine | None = None,
        exclude: Iterable[str] = (),
        ignore: Iterable[str | os.PathLike[str]] = (),
        max_pending: int = 10_000,
        debounce: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        backend: Backend = "auto",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown real-time back end {backend!r} (one of: {', '.join(BACKENDS)})")
        self.requested_backend: Backend = backend
        self.fallback_reason: str | None = None
        self.engine = engine
        self.outbox = outbox
        self.paths = [os.fsencode(os.path.abspath(p)) for p in paths]
        self.action = Action(action)
        if self.action is Action.QUARANTINE and quarantine is None:
            raise ValueError("the quarantine action needs a quarantine store")
        self.quarantine = quarantine
        self.exclude = tuple(exclude)
        ignored = [os.fsencode(os.path.abspath(p)) for p in ignore]
        # both spellings: inotify paths are built from the configured ones, fanotify's are resolved by the kernel
        self._ignore = tuple(dict.fromkeys([*(p.rstrip(b"/") + b"/" for p in ignored), *protected_prefixes(ignored)]))
        self.queue = PendingQueue(max_pending, debounce, clock)
        self._now = now
        self._inotify: Inotify | None = None
        self._fanotify: FanotifyWatcher | None = None
        self.clean_cache = CleanCache()
        self._watches: dict[int, bytes] = {}
        self._inodes: dict[int, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._threads: list[threading.Thread] = []
        self._problems: list[str] = []
        self._reported_dropped = 0
        self._lock = threading.Lock()
        self.stats = RealtimeStats()
        self.allowed: frozenset[str] = frozenset()  # SHA-256 of files allowed everywhere (the policy's allow-list)

    # -- life cycle ---------------------------------------------------------------------------------------------

    @property
    def backend(self) -> Literal["fanotify", "inotify"] | None:
        """The back end running: ``fanotify`` or ``inotify`` once opened, None before (or after :meth:`close`)."""
        if self._fanotify is not None:
            return "fanotify"
        if self._inotify is not None:
            return "inotify"
        return None

    def open(self) -> None:
        """Start the back end and watch every path (recursively). Raises :class:`RealtimeError` if none can be."""
        roots = []
        for root in self.paths:
            if os.path.isdir(root):
                roots.append(root)
            else:
                self.note(f"real-time protection cannot watch {os.fsdecode(root)}: not a directory")
        if not roots:
            raise RealtimeError("real-time protection has no directory it can watch")
        if self.requested_backend != "inotify":
            try:
                self._open_fanotify(roots)
                return
            except RealtimeError as exc:
                if self.requested_backend == "fanotify":
                    raise
                self.fallback_reason = str(exc)
                log.info("real-time protection uses inotify: %s", exc)
        self._open_inotify(roots)

    def _open_fanotify(self, roots: list[bytes]) -> None:
        try:
            watcher = FanotifyWatcher(self.clean_cache)
        except FanotifyError as exc:
            raise RealtimeError(f"fanotify cannot start: {exc}") from exc
        watcher.ignore = self._ignore
        problems = []
        for root in roots:
            try:
                problems.extend(watcher.add(root))
            except OSError as exc:
                problems.append(f"real-time protection cannot watch {os.fsdecode(root)} with fanotify: {exc.strerror}")
        if not watcher.roots:
            watcher.close()
            raise RealtimeError(f"fanotify cannot watch any directory ({'; '.join(problems)})")
        for problem in problems:
            self.note(problem)
        self._fanotify = watcher
        log.info(
            "real-time protection (fanotify: on write and open) watching %d directories on %d mounts (action: %s)",
            len(watcher.roots),
            len(watcher.marks),
            self.action.value,
        )

    def _open_inotify(self, roots: list[bytes]) -> None:
        self._inotify = Inotify()
        for root in roots:
            self._watch_tree(root, queue_files=False)
        if not self._watches:
            self.close()
            raise RealtimeError("real-time protection has no directory it can watch")
        log.info(
            "real-time protection (inotify: on write) watching %d directories (action: %s)",
            len(self._watches),
            self.action.value,
        )

    def start(self) -> None:
        """Open (when not yet) and start the reader and worker threads."""
        if self.backend is None:
            self.open()
        self._stop.clear()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._threads = [
            threading.Thread(target=self._read_loop, name="garrison-realtime-reader", daemon=True),
            threading.Thread(target=self._work_loop, name="garrison-realtime-worker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads (the scan in progress finishes) and release the back end."""
        self._stop.set()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        self.queue.wake()
        for thread in self._threads:
            thread.join(timeout)
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        if alive:
            log.error("real-time protection threads did not stop: %s", ", ".join(alive))
        self._threads = []
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r, self._wake_w = -1, -1
        self.close()

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        if self._fanotify is not None:
            self._fanotify.close()
            self._fanotify = None
        self._watches.clear()
        self._inodes.clear()

    # -- problems for the heartbeat -----------------------------------------------------------------------------

    def note(self, problem: str) -> None:
        log.warning("%s", problem)
        with self._lock:
            if problem not in self._problems and len(self._problems) < 16:
                self._problems.append(problem[:500])

    def take_problems(self) -> list[str]:
        """Problems since the last call, for the heartbeat's ``errors`` (dropped paths included)."""
        with self._lock:
            problems, self._problems = self._problems, []
        dropped = self.queue.dropped
        if dropped > self._reported_dropped:
            problems.append(
                f"real-time protection dropped {dropped - self._reported_dropped} files unscanned (queue full; "
                f"{dropped} since start)"
            )
            self._reported_dropped = dropped
        return problems

    # -- watching -----------------------------------------------------------------------------------------------

    @property
    def watched(self) -> list[bytes]:
        """The directories watched: every one for inotify, the protected (resolved) roots for fanotify."""
        if self._fanotify is not None:
            return sorted(root.rstrip(b"/") for root in self._fanotify.roots)
        return sorted(list(self._watches.values()))

    def _watch_tree(self, top: bytes, *, queue_files: bool) -> None:
        inotify = self._inotify
        if inotify is None:
            return
        for directory, subdirs, files in os.walk(top, onerror=lambda exc: self.note(f"cannot watch: {exc}")):
            if self._ignored(directory + b"/"):
                subdirs.clear()
                continue
            try:
                wd = inotify.add_watch(directory, WATCH_MASK)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    self.note(
                        "real-time protection reached the inotify watch limit (fs.inotify.max_user_watches); "
                        f"{os.fsdecode(directory)} and what follows are not watched"
                    )
                    return
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                    self.note(f"real-time protection cannot watch {os.fsdecode(directory)}: {exc.strerror}")
                subdirs.clear()
                continue
            self._watches[wd] = directory
            with contextlib.suppress(OSError):
                info = os.stat(directory, follow_symlinks=False)
                self._inodes[wd] = (info.st_dev, info.st_ino)
            if queue_files:
                for name in files:
                    self._queue(os.path.join(directory, name))

    def _forget(self, wd: int) -> None:
        self._watches.pop(wd, None)
        self._inodes.pop(wd, None)

    def _moved_away(self, wd: int, directory: bytes) -> bool:
        try:
            info = os.stat(directory, follow_symlinks=False)
        except OSError:
            return True
        return self._inodes.get(wd) != (info.st_dev, info.st_ino)

    def _ignored(self, path: bytes) -> bool:
        return any(path.startswith(prefix) for prefix in self._ignore)

    def _queue(self, path: bytes) -> None:
        if not self._ignored(path):
            self.queue.add(path)

    def read_events(self) -> int:
        """Read the events ready now and queue the files they name; returns how many events (for fanotify: how many
        were kept, those of the agent itself, outside the protected directories or of clean files are not counted)."""
        if self._fanotify is not None:
            return self._read_fanotify(self._fanotify)
        if self._inotify is None:
            return 0
        events = self._inotify.read()
        for event in events:
            self._handle(event)
        return len(events)

    def _read_fanotify(self, watcher: FanotifyWatcher) -> int:
        events = watcher.read()
        for event in events:
            if event.overflow:
                self.stats.overflows += 1
                self.note("real-time protection missed file events (the kernel's fanotify queue overflowed)")
            elif event.path is not None:
                self._queue(event.path)
        return len(events)

    def _handle(self, event: InotifyEvent) -> None:
        if event.mask & IN_Q_OVERFLOW:
            self.stats.overflows += 1
            self.note("real-time protection missed file events (the kernel's inotify queue overflowed)")
            return
        if event.mask & IN_IGNORED:
            self._forget(event.wd)
            return
        directory = self._watches.get(event.wd)
        if directory is None:
            return
        if event.mask & IN_MOVE_SELF:
            # moved within the tree: the parent's IN_MOVED_TO (seen first) has already recorded the new path
            if self._moved_away(event.wd, directory) and self._inotify is not None:
                prefix = directory + b"/"
                inside = [w for w, p in self._watches.items() if p.startswith(prefix) and self._moved_away(w, p)]
                for wd in [event.wd, *inside]:  # the moved tree's watches, whose recorded paths are now wrong
                    self._inotify.rm_watch(wd)
                    self._forget(wd)
            return
        if event.mask & IN_DELETE_SELF:
            self._forget(event.wd)
            return
        if not event.name:
            return
        path = os.path.join(directory, event.name)
        if event.mask & IN_ISDIR:
            if event.mask & (IN_CREATE | IN_MOVED_TO):
                self._watch_tree(path, queue_files=True)
            return
        if event.mask & (IN_CLOSE_WRITE | IN_MOVED_TO):
            self._queue(path)

    def _read_loop(self) -> None:
        source = self._fanotify or self._inotify
        if source is None:
            return
        poller = select.poll()
        poller.register(source.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stop.is_set():
            try:
                poller.poll()
                if self._stop.is_set():
                    break
                self.read_events()
            except Exception:
                log.exception("real-time protection: error reading file events")
                self._stop.wait(0.1)

    # -- scanning -----------------------------------------------------------------------------------------------

    def scan_due(self) -> int:
        """Scan every path whose debounce is over; returns how many were taken from the queue."""
        due = self.queue.pop_due()
        for path in due:
            if self._stop.is_set() and self._threads:
                break
            try:
                self.scan_one(path)
            except Exception:
                self.stats.errors += 1
                log.exception("real-time protection: cannot scan %r", path)
        return len(due)

    def _work_loop(self) -> None:
        while not self._stop.is_set():
            self.scan_due()
            if self._stop.is_set():
                break
            wait = self.queue.next_due()
            self.queue.wait(1.0 if wait is None else min(max(wait, 0.005), 1.0))

    def scan_one(self, path: bytes) -> list[dict[str, Any]]:
        """Scan one file now; act on a detection and queue its events. Returns the events queued."""
        name = os.fsdecode(path)
        found = [item for item in walk([name], exclude=self.exclude) if isinstance(item, Found)]
        if not found:
            return []  # gone, excluded, or not a regular file
        before = self._identity(path)
        result = self.engine.scan_file(name)
        self.stats.scanned += 1
        if result.status is Status.ERROR:
            self.stats.errors += 1
        detections = result.detections
        if not detections:
            # remembered only when the file did not change during the scan: then this verdict is about its content
            if result.status is Status.CLEAN and before is not None and self._identity(path) == before:
                self.clean_cache.add(*before)
            return []
        self.stats.detections += 1
        queued = handle(
            Path(name),
            result,
            not_allowed(result, self.allowed),
            self.outbox,
            action=self.action,
            quarantine=self.quarantine,
            when=self._now(),
            problem=self.note,
        )
        return [event for _obj, _detection, event in queued]

    def _identity(self, path: bytes) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """The file's identity and version for the clean cache (only fanotify's opens consult it)."""
        if self._fanotify is None:
            return None
        try:
            return file_identity(os.stat(path))
        except OSError:
            return None
