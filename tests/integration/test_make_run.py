"""``make run`` (``scripts/run_local.py``) as a user runs it: the real server and agent as subprocesses, in a
temporary data root on a free port, stopped with Ctrl-C (SIGINT), then started again on the same data."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from garrison.agent import identity as identities
from garrison.agent.client import fetch_certificate, fingerprint, ssl_context
from garrison.server.agents.models import Agent
from garrison.server.audit.models import AuditEvent
from garrison.server.db import Database, make_engine
from garrison.server.detections.models import Detection
from garrison.server.units.models import Unit
from tests.conftest import free_port as _free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_local.py"
PIN = re.compile(r"SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")
WAIT = 120.0


class Run:
    """One ``run_local.py`` process, its output gathered line by line by a thread."""

    def __init__(self, root: Path, port: int) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("GARRISON_")}
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--root", str(root), "--port", str(port)],
            env=env | {"PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"no {text!r} in time:\n" + self.output
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            assert line is not None, f"run_local.py ended (status {self.process.poll()}):\n" + self.output
            self.lines.append(line)

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            status = self.process.wait(timeout=WAIT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return status

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def _healthz(port: int, pin: str) -> dict[str, str]:
    """``/healthz`` over TLS, trusting only the certificate whose fingerprint the script printed."""
    der = fetch_certificate("127.0.0.1", port, timeout=10)
    assert fingerprint(der) == pin
    context = ssl_context(ssl.DER_cert_to_PEM_cert(der), check_hostname=False, pinned=True)
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 200
        answer: dict[str, str] = json.loads(response.read())
        return answer
    finally:
        connection.close()


def _counts(root: Path) -> tuple[int, int, int, int]:
    """Units, agents, detections, and audit events of the local unit's creation."""
    engine = make_engine(f"sqlite:///{root / 'server' / 'garrison.db'}")
    try:
        with Database(engine).session() as session:

            def count(model: type[object], *where: object) -> int:
                return session.scalar(select(func.count()).select_from(model).where(*where)) or 0  # type: ignore[arg-type]

            return (
                count(Unit),
                count(Agent),
                count(Detection),
                count(AuditEvent, AuditEvent.action == "unit.create", AuditEvent.actor_name == "system"),
            )
    finally:
        engine.dispose()


def test_make_run_starts_everything_stops_on_ctrl_c_and_reuses_its_data(tmp_path: Path) -> None:
    root, port = tmp_path / "local", _free_port()

    first = Run(root, port)
    try:
        first.wait_for("Garrison is ready")
        pins = PIN.findall(first.output)
        assert pins, first.output
        assert _healthz(port, pins[0])["status"] == "ok"
        assert f"https://127.0.0.1:{port}/setup?token=" in first.output
        assert "Open this link to create the first administrator" in first.output
        assert "EICAR" in first.output
        identity = identities.load(root / "agent" / "identity.json")
        assert identity is not None
        assert identity.server_url == f"https://127.0.0.1:{port}"
        assert _counts(root) == (1, 1, 1, 1)
    finally:
        status = first.interrupt()
    assert status == 0, first.output
    assert "Traceback" not in first.output
    assert first.lines[-2:] == ["agent stopped", "server stopped"]

    second = Run(root, port)
    try:
        second.wait_for("Garrison is ready")
        assert f"already enrolled (agent {identity.agent_id})" in second.output
        assert "EICAR" not in second.output
        assert _counts(root) == (1, 1, 1, 1)
    finally:
        status = second.interrupt()
    assert status == 0, second.output
    assert "Traceback" not in second.output
    assert (root / "logs" / "server.log").read_text(encoding="utf-8").count("Finished server process") == 2
