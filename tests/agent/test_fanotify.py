"""Real-time protection's fanotify back end, with real fanotify on temporary directories.

fanotify needs CAP_SYS_ADMIN (the tests run as root). The files are written and opened by **child processes**
(``cp``, ``cat``, ``sh``): the back end ignores the agent's own process on purpose, so writes from the test's own
process would not be seen. Where fanotify cannot start at all (a container that refuses it), the tests that need it
assert instead that ``auto`` falls back to inotify and say why: no test is skipped.

The fallback is tested for real too: a child process drops CAP_SYS_ADMIN from its bounding set and re-executes
itself (root without the capability), then starts real-time protection.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from garrison.agent.daemon import Daemon
from garrison.agent.fanotify import CleanCache, FanotifyError, FanotifyWatcher, mounts_under
from garrison.agent.outbox import Outbox
from garrison.agent.realtime import RealtimeError, RealtimeProtection
from garrison.agent.settings import AgentSettings
from garrison.engine import Database, Engine
from garrison.engine.eicar import EICAR
from tests.agent.conftest import Clock, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fanotify and inotify are Linux's")

DEBOUNCE = 0.5


def fanotify_works() -> bool:
    try:
        FanotifyWatcher().close()
    except FanotifyError:
        return False
    return True


FANOTIFY = fanotify_works()


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
    return directory.resolve()  # fanotify reports resolved paths


@pytest.fixture
def eicar_outside(tmp_path: Path) -> Path:
    """EICAR outside the protected directory, for a child process to copy in."""
    source = tmp_path / "eicar.src"
    source.write_bytes(EICAR)
    return source


def make(engine: Engine, outbox: Outbox, watched: Path, clock: Clock, **kwargs: Any) -> RealtimeProtection:
    kwargs.setdefault("backend", "fanotify")
    realtime = RealtimeProtection(engine, outbox, [watched], debounce=DEBOUNCE, clock=clock, **kwargs)
    realtime.open()
    return realtime


def settle(realtime: RealtimeProtection, clock: Clock) -> int:
    """Read the events, let the debounce pass, scan; returns how many paths were scanned."""
    realtime.read_events()
    clock.now += DEBOUNCE
    return realtime.scan_due()


def copy_in_child(source: Path, target: Path) -> None:
    subprocess.run(["cp", str(source), str(target)], check=True)


def read_in_child(path: Path) -> None:
    subprocess.run(["cat", str(path)], check=True, stdout=subprocess.DEVNULL)


def append_in_child(path: Path, text: str) -> None:
    subprocess.run(["sh", "-c", 'printf "%s" "$1" >> "$2"', "sh", text, str(path)], check=True)


def payloads(outbox: Outbox) -> list[dict[str, Any]]:
    return [event.payload for event in outbox.batch(limit=1000)]


def assert_auto_falls_back(engine: Engine, outbox: Outbox, watched: Path) -> None:
    """Where fanotify cannot start here, what ``auto`` must do instead: inotify, and the reason kept."""
    realtime = RealtimeProtection(engine, outbox, [watched])
    realtime.open()
    try:
        assert realtime.backend == "inotify"
        assert realtime.fallback_reason and "fanotify" in realtime.fallback_reason
    finally:
        realtime.close()


# -- for real, with fanotify --------------------------------------------------------------------------------------


def test_auto_picks_fanotify_when_privileged(engine: Engine, outbox: Outbox, watched: Path) -> None:
    realtime = RealtimeProtection(engine, outbox, [watched])
    assert realtime.backend is None  # not open yet
    realtime.open()
    try:
        if FANOTIFY:
            assert realtime.backend == "fanotify"
            assert realtime.fallback_reason is None
            assert realtime.watched == [os.fsencode(watched)]
        else:
            assert realtime.backend == "inotify"
            assert realtime.fallback_reason
    finally:
        realtime.close()
    assert realtime.backend is None


def test_eicar_written_by_another_process_is_detected(
    engine: Engine, outbox: Outbox, watched: Path, clock: Clock, eicar_outside: Path
) -> None:
    if not FANOTIFY:
        return assert_auto_falls_back(engine, outbox, watched)
    realtime = make(engine, outbox, watched, clock)
    try:
        copy_in_child(eicar_outside, watched / "eicar.com")
        realtime.read_events()
        assert list(realtime.queue._items) == [os.fsencode(watched / "eicar.com")]
        clock.now += DEBOUNCE / 2
        assert realtime.scan_due() == 0  # the debounce applies to fanotify's events too
        clock.now += DEBOUNCE
        assert realtime.scan_due() == 1
    finally:
        realtime.close()
    [event] = payloads(outbox)
    assert event["path"] == str(watched / "eicar.com")
    assert event["name"] == "Eicar-Test-Signature"
    assert event["action"] == "report"


def test_existing_infected_file_is_detected_when_opened(
    engine: Engine, outbox: Outbox, watched: Path, clock: Clock
) -> None:
    if not FANOTIFY:
        return assert_auto_falls_back(engine, outbox, watched)
    (watched / "sub").mkdir()
    old = watched / "sub" / "old.com"
    old.write_bytes(EICAR)  # before protection started: no write event will ever come for it
    realtime = make(engine, outbox, watched, clock, action="delete")
    try:
        assert settle(realtime, clock) == 0
        read_in_child(old)
        assert settle(realtime, clock) == 1
    finally:
        realtime.close()
    [event] = payloads(outbox)
    assert event["path"] == str(old)
    assert event["action"] == "delete"
    assert event["action_ok"] is True
    assert not old.exists()


def test_new_subdirectories_are_covered_without_watches(
    engine: Engine, outbox: Outbox, watched: Path, clock: Clock, eicar_outside: Path
) -> None:
    if not FANOTIFY:
        return assert_auto_falls_back(engine, outbox, watched)
    realtime = make(engine, outbox, watched, clock)
    try:
        (watched / "a" / "b" / "c").mkdir(parents=True)  # made after the marks: the mount mark still sees it
        copy_in_child(eicar_outside, watched / "a" / "b" / "c" / "deep.com")
        assert settle(realtime, clock) == 1
    finally:
        realtime.close()
    [event] = payloads(outbox)
    assert event["path"] == str(watched / "a" / "b" / "c" / "deep.com")


def test_the_agents_own_opens_cause_no_scans(engine: Engine, outbox: Outbox, watched: Path, clock: Clock) -> None:
    if not FANOTIFY:
        return assert_auto_falls_back(engine, outbox, watched)
    (watched / "notes.txt").write_text("nothing to see\n")
    realtime = make(engine, outbox, watched, clock)
    watcher = realtime._fanotify
    assert watcher is not None
    try:
        read_in_child(watched / "notes.txt")
        assert settle(realtime, clock) == 1  # the scan opens the file: an event from the agent itself...
        assert settle(realtime, clock) == 0  # ...which is dropped, so the scan does not queue another one
        own = watcher.stats.own
        assert own >= 1
        (watched / "notes.txt").read_bytes()
        (watched / "mine.txt").write_text("written by the agent\n")
        assert settle(realtime, clock) == 0
        assert watcher.stats.own >= own + 2
    finally:
        realtime.close()
    assert realtime.stats.scanned == 1
    assert len(outbox) == 0


def test_repeated_opens_of_a_clean_file_are_scanned_once(
    engine: Engine, outbox: Outbox, watched: Path, clock: Clock
) -> None:
    if not FANOTIFY:
        return assert_auto_falls_back(engine, outbox, watched)
    clean = watched / "clean.txt"
    clean.write_text("clean\n")
    realtime = make(engine, outbox, watched, clock)
    watcher = realtime._fanotify
    assert watcher is not None
    try:
        for _ in range(3):
            read_in_child(clean)
            settle(realtime, clock)
        assert realtime.stats.scanned == 1
        assert watcher.stats.cached == 2
        append_in_child(clean, "more\n")  # a write: scanned again, and the new version is cached in turn
        assert settle(realtime, clock) == 1
        read_in_child(clean)
        assert settle(realtime, clock) == 0
    finally:
        realtime.close()
    assert realtime.stats.scanned == 2
    assert watcher.stats.cached == 3


def test_infected_files_are_not_cached_as_clean(
    engine: Engine, outbox: Outbox, watched: Path, clock: Clock, eicar_outside: Path
) -> None:
    if not FANOTIFY:
        return assert_auto_falls_back(engine, outbox, watched)
    realtime = make(engine, outbox, watched, clock)
    try:
        copy_in_child(eicar_outside, watched / "eicar.com")
        assert settle(realtime, clock) == 1
        read_in_child(watched / "eicar.com")  # reported, left in place: each open is reported again
        assert settle(realtime, clock) == 1
    finally:
        realtime.close()
    assert len(payloads(outbox)) == 2
    assert len(realtime.clean_cache) == 0


def test_files_outside_and_ignored_are_not_queued(
    engine: Engine, outbox: Outbox, watched: Path, clock: Clock, tmp_path: Path, eicar_outside: Path
) -> None:
    if not FANOTIFY:
        return assert_auto_falls_back(engine, outbox, watched)
    (watched / "state").mkdir()
    realtime = make(engine, outbox, watched, clock, ignore=[watched / "state"], exclude=["*.skip"])
    watcher = realtime._fanotify
    assert watcher is not None
    try:
        copy_in_child(eicar_outside, tmp_path / "outside.com")  # same mount, not protected
        copy_in_child(eicar_outside, watched / "state" / "eicar.com")
        copy_in_child(eicar_outside, watched / "eicar.skip")
        settle(realtime, clock)
    finally:
        realtime.close()
    assert watcher.stats.outside >= 1
    assert realtime.stats.scanned == 0
    assert len(outbox) == 0


def test_running_threads_with_fanotify(engine: Engine, outbox: Outbox, watched: Path, eicar_outside: Path) -> None:
    if not FANOTIFY:
        return assert_auto_falls_back(engine, outbox, watched)
    realtime = RealtimeProtection(engine, outbox, [watched], debounce=0.05, action="delete")
    realtime.start()
    try:
        assert realtime.backend == "fanotify"
        copy_in_child(eicar_outside, watched / "eicar.txt")
        assert wait_until(lambda: len(outbox) >= 1)
        assert wait_until(lambda: not (watched / "eicar.txt").exists())
    finally:
        realtime.stop(timeout=5)
    assert not realtime.running
    assert realtime.backend is None
    [event] = payloads(outbox)
    assert event["action_ok"] is True


def test_forced_inotify_still_works(engine: Engine, outbox: Outbox, watched: Path, clock: Clock) -> None:
    realtime = make(engine, outbox, watched, clock, backend="inotify")
    try:
        assert realtime.backend == "inotify"
        assert realtime.fallback_reason is None
        (watched / "eicar.com").write_bytes(EICAR)  # inotify sees the agent's own writes too
        assert settle(realtime, clock) == 1
    finally:
        realtime.close()
    [event] = payloads(outbox)
    assert event["path"] == str(watched / "eicar.com")


def test_unknown_backend_is_refused(engine: Engine, outbox: Outbox, watched: Path) -> None:
    with pytest.raises(ValueError, match="back end"):
        RealtimeProtection(engine, outbox, [watched], backend="kqueue")  # type: ignore[arg-type]


def test_daemon_passes_the_backend_setting(
    engine: Engine, outbox: Outbox, watched: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GARRISON_AGENT_REALTIME_PATHS", f'["{watched}"]')
    monkeypatch.setenv("GARRISON_AGENT_REALTIME_BACKEND", "inotify")
    settings = AgentSettings(state_dir=tmp_path / "state")
    assert settings.realtime_backend == "inotify"
    assert AgentSettings(state_dir=tmp_path / "state", realtime_backend="auto").realtime_backend == "auto"
    daemon = Daemon(settings, cast(Any, None), outbox, cast(Any, None), engine_loader=lambda _: (engine, None))
    realtime = daemon.start_realtime()
    try:
        assert realtime is not None
        assert realtime.backend == "inotify"
    finally:
        daemon.stop_realtime()


# -- pieces -------------------------------------------------------------------------------------------------------


def test_clean_cache_is_bounded_and_forgets_on_write() -> None:
    cache = CleanCache(size=2)
    cache.add((1, 10), (5, 100))
    cache.add((1, 11), (5, 100))
    assert cache.is_clean((1, 10), (5, 100))  # now the most recently used
    assert not cache.is_clean((1, 10), (6, 100))  # another size: another version
    assert not cache.is_clean((1, 10), (5, 101))  # another mtime
    cache.add((1, 12), (5, 100))  # evicts (1, 11), the least recently used
    assert not cache.is_clean((1, 11), (5, 100))
    assert cache.is_clean((1, 10), (5, 100))
    cache.forget((1, 10))
    assert not cache.is_clean((1, 10), (5, 100))
    assert len(cache) == 1


def test_mounts_under_leaves_out_pseudo_file_systems() -> None:
    assert all(not point.startswith(b"/proc/") for point in mounts_under(b"/"))
    assert mounts_under(b"/no/such/directory") == []


# -- the fallback, for real: a child process without CAP_SYS_ADMIN ------------------------------------------------

CHILD = textwrap.dedent(
    """
    import ctypes, logging, os, sys
    from pathlib import Path

    mode, base, backend = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    if mode == "drop":
        # Take CAP_SYS_ADMIN out of the bounding set, then re-execute: root keeps every other capability, not that
        # one (permitted after exec = bounding set, for root without file capabilities).
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(24, 21, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_SYS_ADMIN
            print("CANNOT-DROP", os.strerror(ctypes.get_errno()), flush=True)
        os.execv(sys.executable, [sys.executable, sys.argv[0], "run", *sys.argv[2:]])

    status = Path("/proc/self/status").read_text()
    effective = int(next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff")), 16)
    print("CAP_SYS_ADMIN", bool(effective & (1 << 21)))
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")

    from garrison.agent.outbox import Outbox
    from garrison.agent.realtime import RealtimeError, RealtimeProtection
    from garrison.engine import Database, Engine
    from garrison.engine.eicar import EICAR

    watched = base / "watched"
    with Outbox(base / "state" / "outbox.sqlite3") as outbox:
        realtime = RealtimeProtection(Engine(Database.empty()), outbox, [watched], debounce=0, backend=backend)
        try:
            realtime.open()
        except RealtimeError as exc:
            print("ERROR", exc)
            sys.exit(0)
        print("BACKEND", realtime.backend)
        (watched / "eicar.com").write_bytes(EICAR)
        realtime.read_events()
        realtime.scan_due()
        realtime.close()
        print("DETECTIONS", len(outbox))
    """
)


def run_without_cap_sys_admin(tmp_path: Path, backend: str) -> str:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    base = tmp_path / backend
    (base / "watched").mkdir(parents=True)
    command = [sys.executable, str(script), "drop", str(base), backend]
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "CAP_SYS_ADMIN False" in result.stdout, result.stdout + result.stderr
    return result.stdout


def test_auto_falls_back_to_inotify_without_cap_sys_admin(tmp_path: Path) -> None:
    out = run_without_cap_sys_admin(tmp_path, "auto")
    assert "BACKEND inotify" in out
    assert (
        "INFO real-time protection uses inotify: fanotify cannot start: fanotify_init failed: "
        "Operation not permitted (needs CAP_SYS_ADMIN)" in out
    )
    assert "DETECTIONS 1" in out  # and inotify does its job


def test_forced_fanotify_without_cap_sys_admin_fails_clearly(tmp_path: Path) -> None:
    out = run_without_cap_sys_admin(tmp_path, "fanotify")
    assert "ERROR fanotify cannot start: fanotify_init failed: Operation not permitted (needs CAP_SYS_ADMIN)" in out
    assert "BACKEND" not in out


def test_forced_fanotify_raises_when_unavailable(engine: Engine, outbox: Outbox, watched: Path) -> None:
    realtime = RealtimeProtection(engine, outbox, [watched], backend="fanotify")
    if FANOTIFY:
        realtime.open()
        assert realtime.backend == "fanotify"
        realtime.close()
    else:
        with pytest.raises(RealtimeError, match="fanotify"):
            realtime.open()
