"""The outbox keeps every event until it is acknowledged: across reopen, kill -9, threads and a full disk."""

from __future__ import annotations

import collections
import contextlib
import math
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from garrison.agent.outbox import ROW_OVERHEAD, Event, Outbox, OutboxCorrupt, OutboxFull

PAD = "x" * 1000


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite3") as box:
        yield box


def everything(outbox: Outbox) -> list[Event]:
    return outbox.batch(limit=10**9, max_bytes=1 << 60)


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


# -- basic contract -----------------------------------------------------------------------------------------------


def test_put_batch_ack(outbox: Outbox) -> None:
    ids = [outbox.put("detection", {"n": n, "path": f"/tmp/{n}"}) for n in range(5)]
    assert len(ids) == len(set(ids))
    assert len(outbox) == 5

    events = outbox.batch()
    assert [event.id for event in events] == ids
    assert [event.payload["n"] for event in events] == list(range(5))
    assert all(event.kind == "detection" and event.created.tzinfo is not None for event in events)
    assert outbox.batch() == events  # un-acknowledged events come back on every call

    assert outbox.ack([ids[0], ids[2], uuid.uuid4()]) == 2  # unknown ids are ignored
    assert [event.id for event in outbox.batch()] == [ids[1], ids[3], ids[4]]
    assert outbox.ack([ids[0]]) == 0  # acknowledging twice is harmless
    outbox.ack(event.id for event in outbox.batch())
    assert len(outbox) == 0
    assert outbox.batch() == []
    assert outbox.size_bytes() == 0


def test_events_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.sqlite3"
    with Outbox(path) as box:
        first = box.put("scan", {"files": 3, "name": "Quét toàn bộ"})
        second = box.put("scan", {"files": 4})
        box.ack([first])
        before = box.batch()
    with Outbox(path) as box:
        assert box.batch() == before
        assert [event.id for event in before] == [second]
        assert before[0].payload == {"files": 4}


def test_batch_limits(outbox: Outbox) -> None:
    ids = [outbox.put("e", {"pad": PAD}) for _ in range(10)]
    assert [event.id for event in outbox.batch(limit=3)] == ids[:3]
    size = ROW_OVERHEAD + len("e") + len(f'{{"pad":"{PAD}"}}')
    assert [event.id for event in outbox.batch(max_bytes=size * 4 + 1)] == ids[:4]
    assert [event.id for event in outbox.batch(max_bytes=1)] == ids[:1]  # one big event never blocks the queue


def test_size_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, max_bytes=20_000) as box:
        ids = [box.put("e", {"n": n, "pad": PAD}) for n in range(100)]
        kept = [event.id for event in everything(box)]
        assert box.size_bytes() <= 20_000
        assert 0 < len(kept) < 100
        assert kept == ids[-len(kept) :]  # the newest are kept, in order
        assert box.dropped == 100 - len(kept)
        dropped = box.dropped
    with Outbox(path, max_bytes=20_000) as box:
        assert box.dropped == dropped  # the counter is persistent


def test_caller_mistakes_store_nothing(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="bigger than the outbox bound"):
        Outbox(outbox.path, max_bytes=500).put("e", {"pad": PAD})
    with pytest.raises(TypeError):
        outbox.put("e", {"when": object()})
    with pytest.raises(ValueError, match="Out of range float values"):
        outbox.put("e", {"ratio": math.nan})
    assert len(outbox) == 0


def test_close(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.put("e", {})
    box.close()
    box.close()
    with pytest.raises(ValueError, match="closed"):
        box.put("e", {})
    with pytest.raises(ValueError, match="closed"):
        len(box)


def test_file_is_private(outbox: Outbox) -> None:
    outbox.put("e", {"path": "/home/a/secret.doc"})
    assert stat.S_IMODE(outbox.path.stat().st_mode) == 0o600


def test_not_an_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a database " * 100)
    with pytest.raises(OutboxCorrupt, match="damaged or is not an outbox"):
        Outbox(path)


# -- threads ------------------------------------------------------------------------------------------------------


def test_scanner_threads_put_while_sender_acks(outbox: Outbox) -> None:
    producers, per_producer = 4, 150
    put_ids: list[uuid.UUID] = []
    put_lock = threading.Lock()
    received: list[uuid.UUID] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def produce(worker: int) -> None:
        try:
            for n in range(per_producer):
                event_id = outbox.put("detection", {"worker": worker, "n": n})
                with put_lock:
                    put_ids.append(event_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def send() -> None:
        try:
            while True:
                finished = done.is_set()  # read before the batch: nothing can be put after it
                events = outbox.batch(limit=37)
                received.extend(event.id for event in events)
                outbox.ack(event.id for event in events)
                if finished and not events:
                    return
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(worker,)) for worker in range(producers)]
    sender = threading.Thread(target=send)
    sender.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    sender.join()

    assert errors == []
    assert len(put_ids) == producers * per_producer
    assert collections.Counter(received) == collections.Counter(put_ids)  # every event exactly once
    assert len(outbox) == 0


# -- kill -9 ------------------------------------------------------------------------------------------------------

CHILD = r"""
import sys
from pathlib import Path
from garrison.agent.outbox import Outbox

outbox = Outbox(Path(sys.argv[1]), max_bytes=1 << 40)
print("ready", flush=True)
n = 0
while True:
    n += 1
    event_id = outbox.put("test", {"n": n, "pad": "x" * (n * 37 % 3000)})
    print("put", event_id, flush=True)
    if n % 7 == 0:
        events = outbox.batch(limit=3)
        print("acking", *(event.id for event in events), flush=True)
        outbox.ack(event.id for event in events)
        print("acked", flush=True)
"""


def run_and_kill(path: Path, lines_before_kill: int) -> list[list[str]]:
    """Run the writer child, SIGKILL it after it has printed that many lines; every line it printed."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(120, child.kill)  # only against a hung child; never reached when things work
    watchdog.start()
    try:
        assert child.stdout is not None
        lines: list[list[str]] = []
        for line in child.stdout:
            lines.append(line.split())
            if len(lines) > lines_before_kill:
                os.kill(child.pid, signal.SIGKILL)
                break
        lines.extend(line.split() for line in child.stdout)  # what it printed before dying was committed
        child.wait()
    finally:
        watchdog.cancel()
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL, "the child stopped before it was killed"
    assert lines[0] == ["ready"]
    return lines


def test_kill_9_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    rng = random.Random(20261125)
    committed: set[str] = set()
    acked: set[str] = set()
    maybe_acked: set[str] = set()
    rounds = 12
    for _ in range(rounds):
        lines = run_and_kill(path, rng.randint(1, 600))
        pending: list[str] = []
        for line in lines[1:]:
            if line[0] == "put":
                committed.add(line[1])
            elif line[0] == "acking":
                pending = line[1:]
            elif line[0] == "acked":
                acked.update(pending)
                pending = []
        maybe_acked.update(pending)  # killed during ack: either outcome is correct
        assert integrity(path) == "ok"

    with Outbox(path) as box:
        present = collections.Counter(str(event.id) for event in everything(box))
        assert len(box) == sum(present.values())
    assert set(present.values()) <= {1}  # nothing twice
    assert not acked & set(present)  # nothing after its ack
    missing = committed - acked - maybe_acked - set(present)
    assert not missing  # nothing reported committed was lost
    # A put can commit and be killed before printing its id: at most one such event per round.
    assert len(set(present) - committed) <= rounds


# -- full disk ----------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB file system (tmpfs), so that writes fail with ENOSPC; skipped where mounting is not allowed."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount_point)],
        check=False,
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the max_page_count test covers the logic")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(bytes(4096))
    return filler


def test_outbox_that_fills_the_disk_keeps_the_newest(small_disk: Path) -> None:
    path = small_disk / "outbox.sqlite3"
    with Outbox(path) as box:  # its 64 MiB bound is far above the 4 MiB disk
        ids = [box.put("e", {"n": n, "pad": PAD}) for n in range(5000)]  # never raises
        kept = [event.id for event in everything(box)]
        assert box.dropped > 0
        assert len(kept) + box.dropped == len(ids)
        assert kept == ids[-len(kept) :]
        assert len(kept) > 100
    assert integrity(path) == "ok"


def test_disk_filled_by_someone_else(small_disk: Path) -> None:
    path = small_disk / "outbox.sqlite3"
    with Outbox(path) as box:
        before = [box.put("e", {"n": n, "pad": PAD}) for n in range(200)]
        fill(small_disk)
        # The reserve lets the outbox drop old events even now, so it keeps taking new ones.
        stored = [box.put("e", {"n": n, "pad": PAD}) for n in range(2000)]
        kept = [event.id for event in everything(box)]
        assert box.dropped > 0
        assert kept == (before + stored)[-len(kept) :]  # newest kept, oldest dropped, order intact
        assert len(kept) + box.dropped == len(before) + len(stored)
    assert integrity(path) == "ok"


def test_full_disk_and_nothing_to_drop(small_disk: Path) -> None:
    path = small_disk / "outbox.sqlite3"
    with Outbox(path, reserve_bytes=0) as box:
        filler = fill(small_disk)
        with pytest.raises(OutboxFull) as refused:
            for n in range(100):
                box.put("e", {"n": n, "pad": PAD * 10})
        assert str(refused.value).startswith("cannot store an event: the disk holding")
        assert "database or disk" not in str(refused.value)  # no raw SQLite message

        filler.unlink()  # room again: the outbox works as before
        after = box.put("e", {"after": True})
        assert everything(box)[-1].id == after
    assert integrity(path) == "ok"


def test_database_full_simulated(tmp_path: Path) -> None:
    """The same path through SQLite's own limit, for machines where a tmpfs cannot be mounted."""
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, reserve_bytes=0) as box:
        conn = box._conn  # a test's only look inside: cap the database's size
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages + 40}")
        ids = [box.put("e", {"n": n, "pad": PAD}) for n in range(600)]  # never raises
        kept = [event.id for event in everything(box)]
        assert box.dropped > 0
        assert kept == ids[-len(kept) :]

        box.ack(kept)
        with pytest.raises(OutboxFull, match="the outbox is empty"):
            box.put("e", {"pad": "y" * 1_000_000})
    assert integrity(path) == "ok"
