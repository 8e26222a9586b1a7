"""The process pool: every file gets exactly one result, even when a worker hangs or dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from garrison.engine import Engine, ScanLimits, Status
from garrison.engine import pool as pool_module
from garrison.engine.eicar import EICAR
from garrison.engine.pool import scan_files
from tests.conftest import zip_bytes


def _members(count: int, size: int) -> dict[str, bytes]:
    """Random members behind a text prefix: a member that happened to start with a format's magic (1f 8b, gzip:
    about one run in 30 with 2,000 members) would be unpacked, fail, and make its file incomplete."""
    return {f"m{i}.txt": b"garrison test member\n" + os.urandom(size) for i in range(count)}


def _files(directory: Path, count: int, data: bytes) -> list[tuple[str, int]]:
    directory.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"f{i:03d}.zip"
        path.write_bytes(data)
        paths.append((str(path), len(data)))
    return paths


def test_results_for_every_file_in_parallel(tmp_path: Path) -> None:
    paths = _files(tmp_path / "many", 40, zip_bytes({"eicar.com": EICAR}))
    results = list(scan_files(Engine(), paths, jobs=2))
    assert sorted(r.path for r in results) == sorted(p for p, _ in paths)
    assert {r.status for r in results} == {Status.INFECTED}
    assert multiprocessing.active_children() == []


def test_a_worker_over_its_time_is_stopped_and_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No grace and a tiny limit: the watchdog stops workers mid-file; every file still gets one result.
    monkeypatch.setattr(pool_module, "GRACE_SECONDS", 0.0)
    monkeypatch.setattr(pool_module, "SEND_INTERVAL", 0.0)
    members = _members(2000, 1024)
    paths = _files(tmp_path / "slow", 6, zip_bytes(members))
    engine = Engine(limits=ScanLimits(max_scan_time=0.001))
    results = list(scan_files(engine, paths, jobs=2))
    assert sorted(r.path for r in results) == sorted(p for p, _ in paths)
    assert all(r.status is Status.INCOMPLETE for r in results)
    # Killed mid-batch, the files were isolated; alone, each still overran and was stopped and blamed.
    assert any(r.reason == pool_module.STOPPED for r in results)
    assert multiprocessing.active_children() == []


def test_a_killed_worker_loses_nothing_and_blames_no_file(tmp_path: Path) -> None:
    # The worker is killed from outside, not by a file: its files are scanned again one by one, and since none
    # of them is at fault each gets its normal result.
    members = _members(2000, 4096)
    paths = _files(tmp_path / "crash", 6, zip_bytes(members))
    killed: list[int] = []

    def kill_first_worker() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not killed:
            children = multiprocessing.active_children()
            if children:
                time.sleep(0.05)  # let it start on its first file
                os.kill(children[0].pid or 0, signal.SIGKILL)
                killed.append(children[0].pid or 0)
            time.sleep(0.005)

    thread = threading.Thread(target=kill_first_worker)
    thread.start()
    results = list(scan_files(Engine(), paths, jobs=2))
    thread.join()
    assert killed
    assert sorted(r.path for r in results) == sorted(p for p, _ in paths)
    assert all(r.status is Status.CLEAN for r in results), [(r.path, r.status, r.reason) for r in results]
