"""Real server processes for the browser tests: ``garrison server run`` over HTTPS on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port as _free_port
from tests.integration.test_console_browser import _listening
from tests.server.conftest import postgres_database

GARRISON = [sys.executable, "-m", "garrison.cli"]


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Process:
    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The embedded default (SQLite in the data directory), and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield ""
    else:
        yield from postgres_database()


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[tuple[str, str]]:
    """``garrison server run`` over HTTPS: its base URL and the setup link it printed. Agents report every 2 s."""
    port = _free_port()
    env = {
        **os.environ,
        "GARRISON_DATA_DIR": str(tmp_path / "data"),
        "GARRISON_DATABASE_URL": database_url,
        "GARRISON_PASSWORD_TIME_COST": "1",
        "GARRISON_PASSWORD_MEMORY_KIB": "1024",
        "GARRISON_HEARTBEAT_SECONDS": "2",
        "GARRISON_UPDATES_CHECK_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    command = [*GARRISON, "server", "run", "--host", "127.0.0.1", "--port", str(port)]
    process = Process(command, env, tmp_path / "server.log")
    try:
        links: list[str] = []

        def started() -> bool:
            assert process.process.poll() is None, process.text()
            links[:] = re.findall(r"(https://\S+/setup\?token=\S+)", process.text())
            return bool(links) and _listening(port)

        _wait(started, "the server")
        yield f"https://127.0.0.1:{port}", links[0]
    finally:
        process.stop()
