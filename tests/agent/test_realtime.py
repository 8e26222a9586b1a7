"""Real-time protection with real inotify on temporary directories.

These tests ask for ``backend="inotify"``: they write the files from the test's own process, which the fanotify back
end ignores on purpose (tests/agent/test_fanotify.py writes from child processes).

Most tests drive the watcher synchronously (``read_events`` then ``scan_due``) with a fake clock, so debounce is
exact and nothing sleeps; the thread tests wait for a condition with a bound, never for a fixed time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from garrison.agent.daemon import Daemon
from garrison.agent.outbox import Outbox
from garrison.agent.quarantine import Quarantine, load_or_create_key
from garrison.agent.realtime import PendingQueue, RealtimeError, RealtimeProtection
from garrison.agent.settings import AgentSettings
from garrison.engine import Database, Engine
from garrison.engine.eicar import EICAR
from garrison.protocol.heartbeat import HeartbeatResponse, Inventory
from tests.agent.conftest import Clock, wait_until

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/sys/fs/inotify"), reason="needs Linux inotify")

DEBOUNCE = 0.5


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(Database.empty())


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "state" / "outbox.sqlite3") as box:
        yield box


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    directory = tmp_path / "watched"
    directory.mkdir()
    return directory


def make(engine: Engine, outbox: Outbox, watched: Path, clock: Clock, **kwargs: Any) -> RealtimeProtection:
    kwargs.setdefault("backend", "inotify")
    realtime = RealtimeProtection(engine, outbox, [watched], debounce=DEBOUNCE, clock=clock, **kwargs)
    realtime.open()
    return realtime


def settle(realtime: RealtimeProtection, clock: Clock) -> int:
    """Read what inotify has, let the debounce pass, scan; returns how many paths were scanned."""
    realtime.read_events()
    clock.now += DEBOUNCE
    return realtime.scan_due()


def write_in_chunks(path: Path, chunks: list[bytes]) -> None:
    """Each chunk in its own open/write/close: one IN_CLOSE_WRITE per chunk."""
    for chunk in chunks:
        with open(path, "ab") as handle:
            handle.write(chunk)


def payloads(outbox: Outbox) -> list[dict[str, Any]]:
    return [event.payload for event in outbox.batch(limit=1000)]


EICAR_CHUNKS = [EICAR[:30], EICAR[30:], b"\n", b"  \n"]  # a detection after the 2nd, 3rd and 4th close


def test_eicar_written_in_chunks_is_reported_once(engine: Engine, outbox: Outbox, watched: Path, clock: Clock) -> None:
    realtime = make(engine, outbox, watched, clock)
    try:
        write_in_chunks(watched / "eicar.com", EICAR_CHUNKS)
        realtime.read_events()
        assert len(realtime.queue) == 1
        clock.now += DEBOUNCE / 2
        assert realtime.scan_due() == 0  # not yet: the debounce is not over
        clock.now += DEBOUNCE
        assert realtime.scan_due() == 1
        assert realtime.scan_due() == 0
    finally:
        realtime.close()
    [event] = payloads(outbox)
    assert event["path"] == str(watched / "eicar.com")
    assert event["name"] == "Eicar-Test-Signature"
    assert event["action"] == "report"
    assert event["action_ok"] is True
    assert (watched / "eicar.com").exists()


def test_writes_keep_postponing_but_not_forever(clock: Clock) -> None:
    queue = PendingQueue(10, 1.0, clock)
    queue.add(b"/a")
    for _ in range(4):
        clock.now += 0.9
        queue.add(b"/a")
        assert queue.pop_due() == []
    clock.now += 0.9  # 4.5 s after the first write: still within the 5-second ceiling
    assert queue.pop_due() == []
    clock.now += 0.5
    assert queue.pop_due() == [b"/a"]


def test_eicar_in_the_running_thread_once(engine: Engine, outbox: Outbox, watched: Path) -> None:
    realtime = RealtimeProtection(engine, outbox, [watched], debounce=0.2, backend="inotify")
    realtime.start()
    try:
        write_in_chunks(watched / "eicar.txt", EICAR_CHUNKS)
        assert wait_until(lambda: len(outbox) >= 1)
        assert wait_until(lambda: realtime.stats.scanned >= 1 and len(realtime.queue) == 0)
    finally:
        realtime.stop()
    assert len(outbox) == 1
    assert realtime.stats.scanned == 1


def test_quarantine_action(engine: Engine, outbox: Outbox, watched: Path, clock: Clock, tmp_path: Path) -> None:
    store = Quarantine(tmp_path / "state" / "quarantine", load_or_create_key(tmp_path / "state" / "quarantine.key"))
    realtime = make(engine, outbox, watched, clock, action="quarantine", quarantine=store)
    try:
        (watched / "sample.bin").write_bytes(EICAR)
        assert settle(realtime, clock) == 1
    finally:
        realtime.close()
    assert not (watched / "sample.bin").exists()
    [item] = store.list()
    [event] = payloads(outbox)
    assert event["action"] == "quarantine"
    assert event["action_ok"] is True
    assert item.id in event["action_detail"]
    assert item.original_path == watched / "sample.bin"
    restored = store.restore(item.id, to=tmp_path / "restored.bin")
    assert restored.read_bytes() == EICAR


def test_quarantine_action_needs_a_store(engine: Engine, outbox: Outbox, watched: Path) -> None:
    with pytest.raises(ValueError, match="quarantine store"):
        RealtimeProtection(engine, outbox, [watched], action="quarantine")


def test_delete_action(engine: Engine, outbox: Outbox, watched: Path, clock: Clock) -> None:
    realtime = make(engine, outbox, watched, clock, action="delete")
    try:
        (watched / "gone.com").write_bytes(EICAR)
        assert settle(realtime, clock) == 1
    finally:
        realtime.close()
    assert not (watched / "gone.com").exists()
    [event] = payloads(outbox)
    assert event["action"] == "delete"
    assert event["action_ok"] is True
    assert event["sha256"] in event["action_detail"]


def test_failed_action_is_reported(engine: Engine, outbox: Outbox, watched: Path, clock: Clock) -> None:
    realtime = make(engine, outbox, watched, clock, action="delete")
    try:
        (watched / "vanishing.com").write_bytes(EICAR)
        realtime.read_events()
        [path] = list(realtime.queue._items)
        # the file is scanned, then disappears before the action: the event says the action failed
        real_scan = engine.scan_file

        def scan_then_vanish(name: Any) -> Any:
            result = real_scan(name)
            os.unlink(name)
            return result

        realtime.engine = cast(Any, type("E", (), {"scan_file": staticmethod(scan_then_vanish)}))()
        clock.now += DEBOUNCE
        realtime.scan_due()
    finally:
        realtime.close()
    [event] = payloads(outbox)
    assert path.endswith(b"vanishing.com")
    assert event["action"] == "delete"
    assert event["action_ok"] is False
    assert event["action_detail"]


def test_new_subdirectories_are_watched(engine: Engine, outbox: Outbox, watched: Path, clock: Clock) -> None:
    realtime = make(engine, outbox, watched, clock)
    try:
        (watched / "new").mkdir()
        realtime.read_events()
        assert os.fsencode(watched / "new") in realtime.watched
        (watched / "new" / "eicar.com").write_bytes(EICAR)
        # a tree made at once: files written before its watch existed are queued when it is found
        (watched / "deep" / "er").mkdir(parents=True)
        (watched / "deep" / "er" / "early.com").write_bytes(EICAR)
        assert settle(realtime, clock) == 2
        assert os.fsencode(watched / "deep" / "er") in realtime.watched
        (watched / "deep" / "er" / "late.com").write_bytes(EICAR)
        assert settle(realtime, clock) == 1
    finally:
        realtime.close()
    paths = sorted(event["path"] for event in payloads(outbox))
    assert paths == sorted(
        str(p)
        for p in (
            watched / "new" / "eicar.com",
            watched / "deep" / "er" / "early.com",
            watched / "deep" / "er" / "late.com",
        )
    )


def test_file_moved_in_is_scanned(engine: Engine, outbox: Outbox, watched: Path, clock: Clock, tmp_path: Path) -> None:
    outside = tmp_path / "outside.com"
    outside.write_bytes(EICAR)
    realtime = make(engine, outbox, watched, clock)
    try:
        outside.rename(watched / "moved.com")
        assert settle(realtime, clock) == 1
    finally:
        realtime.close()
    [event] = payloads(outbox)
    assert event["path"] == str(watched / "moved.com")


def test_directory_moved_within_the_tree_stays_watched(
    engine: Engine, outbox: Outbox, watched: Path, clock: Clock, tmp_path: Path
) -> None:
    (watched / "a" / "sub").mkdir(parents=True)
    realtime = make(engine, outbox, watched, clock)
    try:
        (watched / "a").rename(watched / "b")
        realtime.read_events()
        assert os.fsencode(watched / "b" / "sub") in realtime.watched
        assert os.fsencode(watched / "a") not in realtime.watched
        (watched / "b" / "sub" / "eicar.com").write_bytes(EICAR)
        (watched / "b").rename(tmp_path / "away")  # moved out: no longer watched
        realtime.read_events()
        assert realtime.watched == [os.fsencode(watched)]
        settle(realtime, clock)
    finally:
        realtime.close()
    assert len(outbox) == 0  # the file left the protected tree before its scan


def test_queue_bound_drops_oldest_and_counts(clock: Clock) -> None:
    queue = PendingQueue(3, 1.0, clock)
    for name in (b"/1", b"/2", b"/3", b"/4", b"/5"):
        queue.add(name)
    queue.add(b"/4")  # already waiting: nothing dropped
    assert queue.dropped == 2
    assert len(queue) == 3
    clock.now += 1.0
    assert queue.pop_due() == [b"/3", b"/5", b"/4"]


def test_dropped_files_reach_the_heartbeat_errors(engine: Engine, outbox: Outbox, watched: Path, clock: Clock) -> None:
    realtime = make(engine, outbox, watched, clock, max_pending=2)
    try:
        for index in range(5):
            (watched / f"f{index}").write_bytes(b"clean")
        assert settle(realtime, clock) == 2
    finally:
        realtime.close()
    assert realtime.queue.dropped == 3
    assert realtime.stats.scanned == 2
    [problem] = realtime.take_problems()
    assert "dropped 3 files" in problem
    assert realtime.take_problems() == []  # said once


def test_clean_file_gives_no_event(engine: Engine, outbox: Outbox, watched: Path, clock: Clock) -> None:
    realtime = make(engine, outbox, watched, clock)
    try:
        (watched / "notes.txt").write_text("nothing to see\n")
        assert settle(realtime, clock) == 1
    finally:
        realtime.close()
    assert realtime.stats.scanned == 1
    assert len(outbox) == 0


def test_excluded_and_ignored_paths_are_not_scanned(
    engine: Engine, outbox: Outbox, watched: Path, clock: Clock
) -> None:
    (watched / "state").mkdir()
    realtime = make(engine, outbox, watched, clock, exclude=["*.skip"], ignore=[watched / "state"])
    try:
        (watched / "eicar.skip").write_bytes(EICAR)
        (watched / "state" / "eicar.com").write_bytes(EICAR)
        settle(realtime, clock)
    finally:
        realtime.close()
    assert os.fsencode(watched / "state") not in realtime.watched
    assert realtime.stats.scanned == 0
    assert len(outbox) == 0


def test_nothing_to_watch(engine: Engine, outbox: Outbox, tmp_path: Path) -> None:
    realtime = RealtimeProtection(engine, outbox, [tmp_path / "missing"])
    with pytest.raises(RealtimeError, match="no directory"):
        realtime.open()


def test_stop_ends_the_threads(engine: Engine, outbox: Outbox, watched: Path) -> None:
    realtime = RealtimeProtection(engine, outbox, [watched], debounce=0.05, backend="inotify")
    before = threading.active_count()
    realtime.start()
    assert realtime.running
    started = time.monotonic()
    realtime.stop(timeout=5)
    assert time.monotonic() - started < 2
    assert not realtime.running
    assert threading.active_count() == before
    assert realtime.watched == []


class StubClient:
    def __init__(self) -> None:
        self.beats: list[Inventory] = []

    def heartbeat(self, inventory: Inventory) -> HeartbeatResponse:
        self.beats.append(inventory)
        return HeartbeatResponse(next_seconds=60, server_time=datetime.now(UTC))


def test_daemon_runs_realtime_from_settings(
    engine: Engine, outbox: Outbox, watched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GARRISON_AGENT_REALTIME_PATHS", f'["{watched}"]')
    monkeypatch.setenv("GARRISON_AGENT_REALTIME_ACTION", "quarantine")
    monkeypatch.setenv("GARRISON_AGENT_REALTIME_DEBOUNCE_SECONDS", "0.05")
    monkeypatch.setenv("GARRISON_AGENT_REALTIME_BACKEND", "inotify")  # the file is written from this process
    settings = AgentSettings(state_dir=tmp_path / "state")
    assert settings.realtime_paths == [str(watched)]
    client = StubClient()
    identity = SimpleNamespace(agent_id="agent", server_url="https://garrison.test")
    daemon = Daemon(settings, cast(Any, identity), outbox, cast(Any, client), engine_loader=lambda _: (engine, None))
    stop = threading.Event()
    seen: dict[str, Any] = {}

    def wait(seconds: float) -> None:
        (watched / "eicar.com").write_bytes(EICAR)
        seen["queued"] = wait_until(lambda: not (watched / "eicar.com").exists())
        seen["running"] = daemon.realtime is not None and daemon.realtime.running
        stop.set()

    daemon.run(stop, wait=wait)
    assert daemon.realtime is None  # stopped with the loop
    assert seen == {"queued": True, "running": True}
    assert client.beats[0].realtime_enabled is True
    [item] = Quarantine(settings.quarantine_dir, load_or_create_key(settings.quarantine_key_path)).list()
    [event] = payloads(outbox)
    assert event["action"] == "quarantine"
    assert item.id in event["action_detail"]


def test_daemon_without_realtime_paths_reports_it_off(engine: Engine, outbox: Outbox, tmp_path: Path) -> None:
    settings = AgentSettings(state_dir=tmp_path / "state")
    client = StubClient()
    daemon = Daemon(settings, cast(Any, None), outbox, cast(Any, client), engine_loader=lambda _: (engine, None))
    assert daemon.start_realtime() is None
    daemon.heartbeat()
    assert client.beats[0].realtime_enabled is False


def test_daemon_reports_a_realtime_that_cannot_start(engine: Engine, outbox: Outbox, tmp_path: Path) -> None:
    settings = AgentSettings(state_dir=tmp_path / "state", realtime_paths=[str(tmp_path / "missing")])
    client = StubClient()
    daemon = Daemon(settings, cast(Any, None), outbox, cast(Any, client), engine_loader=lambda _: (engine, None))
    assert daemon.start_realtime() is None
    daemon.heartbeat()
    assert client.beats[0].realtime_enabled is False
    assert any("real-time protection is off" in error for error in client.beats[0].errors)
