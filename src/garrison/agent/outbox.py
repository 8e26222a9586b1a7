"""The agent's durable event queue: events wait on disk until the server has acknowledged them.

Users of other managers lose events when the queue floods or the server is away (see anchors.md). Garrison's agent
puts every event (detection, scan finished, quarantine done, ...) into this outbox first; a sender thread takes the
oldest events in batches, posts them, and deletes exactly the ones the server acknowledged::

    with Outbox(state_dir / "outbox.sqlite3") as outbox:
        outbox.put("detection", {"path": "/home/a/x.exe", "signature": "Eicar-Test-Signature"})
        events = outbox.batch()
        ...                                   # post them; the server answers with the ids it stored
        outbox.ack(event.id for event in events)

Guarantees:

- **Durable**: ``put`` returns only after the event is committed to an SQLite database in WAL mode with
  ``synchronous=FULL``, so a ``kill -9`` (or a power cut) after ``put`` returned never loses it, and a kill during
  ``put`` leaves either the whole event or nothing.
- **At least once, never after ack**: ``batch`` hands out the oldest un-acknowledged events, again and again until
  they are acknowledged; ``ack`` deletes exactly the given ids, after which they are never handed out again.
- **Idempotency is the server's job**: an event's id is a UUID made here once, stored with the event and sent
  unchanged on every retry, so the server drops a batch it has already stored (a lost answer means a resend).
- **Bounded**: the encoded size of the stored events (payload JSON + kind + a fixed per-row overhead) never
  exceeds ``max_bytes``; when a new event would pass it, the *oldest* events are dropped and counted in the
  persistent :attr:`Outbox.dropped` counter, which the agent reports so the loss is visible, not silent.
- **Full disk**: when SQLite cannot write because the disk (or the database) is full, ``put`` frees a reserve file
  kept next to the database (``<name>.reserve``, ``reserve_bytes`` of zeros written at open), drops the oldest
  events (at least the reserve's size), gives their pages back to the file system, writes the reserve again and
  retries once; if that is not enough it raises :class:`OutboxFull` with a plain message. The reserve exists
  because on a full disk even deleting rows needs room in SQLite's write-ahead log. So while the outbox itself
  fills the disk it keeps the newest events that fit; when something else fills it, ``put`` raises
  :class:`OutboxFull` until there is room again. Any other storage failure is an :class:`OutboxError`: ``put``
  never leaks a raw ``sqlite3`` error.
- **Thread-safe**: one connection shared under a lock, so scanner threads may ``put`` while the sender thread
  calls ``batch`` and ``ack``. Several processes may open the same file (SQLite locks it), e.g. a CLI reading it.

This module does no network and knows nothing of the protocol's event schemas: payloads are JSON objects.

Errors::

    OutboxError         the outbox cannot be used (cannot open, storage failure)
    ├── OutboxFull      no room for a new event even after dropping the oldest ones
    └── OutboxCorrupt   the database file is damaged or not an outbox
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_RESERVE_BYTES",
    "ROW_OVERHEAD",
    "Event",
    "Outbox",
    "OutboxCorrupt",
    "OutboxError",
    "OutboxFull",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_MAX_BYTES = 64 * MiB
DEFAULT_BATCH_BYTES = 1 * MiB
ROW_OVERHEAD = 64
"""Bytes added to each event's payload and kind when accounting for the size bound (ids, times, row headers)."""

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('bytes', 0), ('dropped', 0);
"""
_SQL_VARIABLES = 500  # ids per DELETE statement, well under SQLite's limit on bound parameters
_EVICT_MIN_BYTES = 256 * 1024  # on a full disk, free at least this much at once so the next puts fit too
DEFAULT_RESERVE_BYTES = 1 * MiB
_RESERVE_RETRY = 64  # while the reserve is missing, try to re-create it every this many puts


class OutboxError(Exception):
    """The outbox cannot do what was asked; the message says why in plain words."""


class OutboxFull(OutboxError):
    """There is no room for a new event, even after dropping the oldest stored events."""


class OutboxCorrupt(OutboxError):
    """The database file is damaged or is not an outbox."""


@dataclass(frozen=True)
class Event:
    """One queued event.

    Attributes:
        id: made by :meth:`Outbox.put`, stable across retries; the server deduplicates on it.
        kind: what happened, e.g. ``"detection"``; the protocol gives the kinds meaning.
        payload: the event's JSON object.
        created: when it was put, timezone-aware UTC.
    """

    id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    created: datetime


def _is_full(error: BaseException) -> bool:
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(error)
    return isinstance(error, OSError) and error.errno == errno.ENOSPC


class Outbox:
    """A durable FIFO of events in one SQLite file. See the module docstring for the guarantees.

    Args:
        path: the database file; its folder is created if missing. The file is created with mode 0600.
        max_bytes: bound on the encoded size of the stored events; the oldest are dropped past it.
        reserve_bytes: size of the reserve file freed when the disk is full (0: no reserve).
    """

    def __init__(
        self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, reserve_bytes: int = DEFAULT_RESERVE_BYTES
    ) -> None:
        if max_bytes <= ROW_OVERHEAD:
            raise ValueError(f"max_bytes must be more than {ROW_OVERHEAD}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self._reserve = self.path.with_name(self.path.name + ".reserve")
        self._puts_without_reserve = 0
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            if _is_full(exc):
                raise OutboxFull(f"cannot create the outbox {self.path}: the disk is full") from exc
            raise OutboxError(f"cannot create the outbox {self.path}: {exc.strerror or exc}") from exc
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            if _is_full(exc):
                raise OutboxFull(f"cannot open the outbox {self.path}: the disk is full") from exc
            if isinstance(exc, sqlite3.OperationalError):
                raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
            raise OutboxCorrupt(f"the outbox {self.path} is damaged or is not an outbox: {exc}") from exc
        self._make_reserve()

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; every write below uses an explicit BEGIN IMMEDIATE.
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            # First, while the file is new and empty (no effect later): lets dropped events give their pages back
            # to the file system, which a full disk needs.
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"the file system does not allow WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            # A short write-ahead log: checkpoint every 1 MiB and truncate it back to 4 MiB at most afterwards.
            conn.execute("PRAGMA wal_autocheckpoint=256")
            conn.execute(f"PRAGMA journal_size_limit={4 * MiB}")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"unknown outbox schema version {version}")
            with _transaction(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    # -- public API -------------------------------------------------------------------------------------------

    def put(self, kind: str, payload: dict[str, Any]) -> uuid.UUID:
        """Store one event durably and return its new id.

        Raises:
            TypeError, ValueError: the payload is not JSON-serialisable (NaN included), or the event alone is
                bigger than ``max_bytes`` -- caller bugs, raised before anything is stored.
            OutboxFull: the disk is full and dropping the oldest events did not make room.
            OutboxError: any other storage failure.
        """
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        size = ROW_OVERHEAD + len(kind.encode()) + len(text.encode())
        if size > self.max_bytes:
            raise ValueError(f"event of {size} bytes is bigger than the outbox bound of {self.max_bytes} bytes")
        event_id = uuid.uuid4()
        row = (str(event_id), kind, text, datetime.now(UTC).isoformat(), size)
        with self._lock:
            conn = self._connection()
            self._store(conn, row)
            if self.reserve_bytes and not self._reserve.exists():
                self._puts_without_reserve += 1
                if self._puts_without_reserve >= _RESERVE_RETRY:
                    self._puts_without_reserve = 0
                    self._make_reserve()
        return event_id

    def batch(self, limit: int = 500, max_bytes: int = DEFAULT_BATCH_BYTES) -> list[Event]:
        """The oldest un-acknowledged events, oldest first: at most ``limit`` of them and about ``max_bytes``.

        The first event is always included, however big, so that one large event cannot block the queue. The
        same events come back on every call until they are acknowledged.
        """
        events: list[Event] = []
        total = 0
        with self._lock:
            conn = self._connection()
            try:
                rows = conn.execute(
                    "SELECT id, kind, payload, created, size FROM events ORDER BY seq LIMIT ?", (limit,)
                ).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read events from {self.path}: {exc}") from exc
        for event_id, kind, payload, created, size in rows:
            if events and total + size > max_bytes:
                break
            total += size
            events.append(Event(uuid.UUID(event_id), kind, json.loads(payload), datetime.fromisoformat(created)))
        return events

    def ack(self, ids: Iterable[uuid.UUID]) -> int:
        """Delete the given events (the server has stored them); unknown ids are ignored. Returns how many went."""
        keys = sorted({str(event_id) for event_id in ids})
        deleted = 0
        with self._lock:
            conn = self._connection()
            try:
                with _transaction(conn):
                    freed = 0
                    for start in range(0, len(keys), _SQL_VARIABLES):
                        chunk = keys[start : start + _SQL_VARIABLES]
                        marks = ",".join("?" * len(chunk))
                        count, size = conn.execute(
                            f"SELECT count(*), coalesce(sum(size), 0) FROM events WHERE id IN ({marks})",  # noqa: S608
                            chunk,
                        ).fetchone()
                        conn.execute(f"DELETE FROM events WHERE id IN ({marks})", chunk)  # noqa: S608
                        deleted += count
                        freed += size
                    conn.execute("UPDATE counters SET value = value - ? WHERE name = 'bytes'", (freed,))
            except sqlite3.Error as exc:
                if _is_full(exc):
                    raise OutboxFull(f"cannot acknowledge events: the disk holding {self.path} is full") from exc
                raise OutboxError(f"cannot acknowledge events in {self.path}: {exc}") from exc
        return deleted

    def __len__(self) -> int:
        return int(self._scalar("SELECT count(*) FROM events"))

    def size_bytes(self) -> int:
        """The encoded size of the stored events, the quantity bounded by ``max_bytes``.

        The file itself is larger: SQLite's pages, indexes and write-ahead log add to it.
        """
        return int(self._scalar("SELECT value FROM counters WHERE name = 'bytes'"))

    @property
    def dropped(self) -> int:
        """How many events were ever dropped to keep the size bound or to make room on a full disk (persistent)."""
        return int(self._scalar("SELECT value FROM counters WHERE name = 'dropped'"))

    def close(self) -> None:
        """Close the database; further calls raise ``ValueError``. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals (the caller holds self._lock) ----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("the outbox is closed")
        return self._conn

    def _scalar(self, sql: str) -> Any:
        with self._lock:
            conn = self._connection()
            try:
                return conn.execute(sql).fetchone()[0]
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read {self.path}: {exc}") from exc

    def _insert(self, conn: sqlite3.Connection, row: tuple[str, str, str, str, int]) -> None:
        with _transaction(conn):
            conn.execute("INSERT INTO events (id, kind, payload, created, size) VALUES (?, ?, ?, ?, ?)", row)
            conn.execute("UPDATE counters SET value = value + ? WHERE name = 'bytes'", (row[4],))
            total = conn.execute("SELECT value FROM counters WHERE name = 'bytes'").fetchone()[0]
            if total > self.max_bytes:
                dropped = self._drop_oldest(conn, total - self.max_bytes)
                log.warning(
                    "outbox %s is over its bound of %d bytes: dropped the %d oldest events",
                    self.path,
                    self.max_bytes,
                    dropped,
                )

    def _drop_oldest(self, conn: sqlite3.Connection, excess: int) -> int:
        """Delete the oldest events whose sizes add up to at least ``excess``; count them as dropped."""
        freed = count = 0
        cutoff = None
        for seq, size in conn.execute("SELECT seq, size FROM events ORDER BY seq"):
            if freed >= excess:
                break
            freed += size
            count += 1
            cutoff = seq
        if cutoff is None:
            return 0
        conn.execute("DELETE FROM events WHERE seq <= ?", (cutoff,))
        conn.execute("UPDATE counters SET value = value - ? WHERE name = 'bytes'", (freed,))
        conn.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped'", (count,))
        return count

    def _store(self, conn: sqlite3.Connection, row: tuple[str, str, str, str, int]) -> None:
        """Insert; when the disk is full, make room step by step and retry (see the module docstring)."""
        if self._try_insert(conn, row):
            return
        log.warning("outbox %s: the disk is full; dropping the oldest events to make room", self.path)
        self._release_reserve(conn)
        self._evict_for_space(conn, row[4])
        self._make_reserve()  # first, so that the next full disk can be handled the same way
        if not self._try_insert(conn, row):
            raise OutboxFull(
                f"cannot store an event: the disk holding {self.path} is full, "
                "even after dropping the oldest queued events"
            )

    def _try_insert(self, conn: sqlite3.Connection, row: tuple[str, str, str, str, int]) -> bool:
        """Insert the row; False when the disk is full, OutboxError for any other failure."""
        try:
            self._insert(conn, row)
        except sqlite3.Error as exc:
            if _is_full(exc):
                return False
            raise OutboxError(f"cannot store an event in {self.path}: {exc}") from exc
        return True

    def _make_reserve(self) -> None:
        """Write the reserve file (zeros, fsynced) if it is missing; on failure leave none and try again later."""
        if not self.reserve_bytes or self._reserve.exists():
            return
        partial = self._reserve.with_name(self._reserve.name + ".tmp")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                block = bytes(min(self.reserve_bytes, MiB))
                left = self.reserve_bytes
                while left > 0:
                    left -= os.write(fd, block[:left])
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, self._reserve)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            log.warning(
                "outbox %s: cannot write the %d-byte disk-full reserve: %s",
                self.path,
                self.reserve_bytes,
                exc.strerror or exc,
            )

    def _release_reserve(self, conn: sqlite3.Connection) -> None:
        """On a full disk: free the reserve, then fold the write-ahead log into the database and truncate it."""
        with contextlib.suppress(FileNotFoundError):
            self._reserve.unlink()
        self._puts_without_reserve = 0
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _evict_for_space(self, conn: sqlite3.Connection, needed: int) -> None:
        """Make room on a full disk by dropping the oldest events; raise OutboxFull if nothing can be dropped.

        The freed pages are given back to the file system (incremental vacuum) and the write-ahead log is
        truncated, so that the reserve file can be written again.
        """
        stored = conn.execute("SELECT value FROM counters WHERE name = 'bytes'").fetchone()[0]
        if stored <= 0:
            raise OutboxFull(f"cannot store an event: the disk holding {self.path} is full and the outbox is empty")
        target = max(2 * needed + self.reserve_bytes, stored // 16, _EVICT_MIN_BYTES)
        try:
            with _transaction(conn):
                dropped = self._drop_oldest(conn, target)
        except sqlite3.Error as exc:
            raise OutboxFull(
                f"cannot store an event: the disk holding {self.path} is full and old events cannot be dropped"
            ) from exc
        log.warning("outbox %s: dropped the %d oldest events because the disk is full", self.path, dropped)
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            # executescript steps the pragma to the end; execute() would free a single page.
            conn.executescript("PRAGMA incremental_vacuum;")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """An explicit write transaction, taken at once (``BEGIN IMMEDIATE``), rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
