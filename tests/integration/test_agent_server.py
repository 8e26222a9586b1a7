"""The real agent against the real server over real TLS: uvicorn in a thread on 127.0.0.1, with the server's own
self-signed certificate, an SQLite database in tmp_path, and the agent's commands run as a user runs them.

The one fake is a small ASGI wrapper in front of the application for what the network and an overloaded server do
(429 with Retry-After, a proxy that loses the answer). Nothing here sleeps for more than a startup poll.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from garrison.agent import identity as identities
from garrison.agent.client import (
    AgentClient,
    UntrustedServer,
    fetch_certificate,
    fingerprint,
    host_in_certificate,
    ssl_context,
)
from garrison.agent.daemon import Daemon, open_outbox
from garrison.agent.settings import AgentSettings
from garrison.cli.main import cli
from garrison.engine import Database as SignatureDatabase
from garrison.engine import Engine
from garrison.engine.eicar import EICAR
from garrison.server import tls
from garrison.server.app import create_app
from garrison.server.db import Database, make_engine
from garrison.server.settings import ServerSettings
from tests.conftest import free_port as _free_port
from tests.conftest import zip_bytes
from tests.server.conftest import login, setup_admin

ASGIApp = Any


class Faults:
    """In front of the application: sheds agent requests with 429, or loses the answer to an event batch."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.shed = 0
        self.retry_after = "3"
        self.lose_events = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/api/v1/agent/") and self.shed:
            self.shed -= 1
            await self._answer(send, 429, {"error": "too_many_requests", "message": "busy"}, self.retry_after)
            return
        if path == "/api/v1/agent/events" and self.lose_events:
            self.lose_events -= 1

            async def swallow(message: dict[str, Any]) -> None:
                pass

            await self.app(scope, receive, swallow)  # the server stores the batch; its answer never arrives
            await self._answer(send, 502, {"message": "bad gateway"})
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(send: Any, status: int, body: dict[str, str], retry_after: str | None = None) -> None:
        headers = [(b"content-type", b"application/json")]
        if retry_after:
            headers.append((b"retry-after", retry_after.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


class LiveServer:
    """The server application under uvicorn, in a thread, stoppable and restartable on the same port."""

    def __init__(self, tmp_path: Path) -> None:
        self.data_dir = tmp_path / "server"
        self.settings = ServerSettings(data_dir=self.data_dir, password_time_cost=1, password_memory_kib=64)
        self.database = Database(make_engine(self.settings.resolved_database_url()))
        self.app = create_app(self.settings, self.database)
        self.faults = Faults(self.app)
        self.tls = tls.ensure_self_signed(self.data_dir, tls.subject_names("127.0.0.1"))
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            self.faults,
            host="127.0.0.1",
            port=self.port,
            ssl_certfile=str(self.tls.cert),
            ssl_keyfile=str(self.tls.key),
            log_config=None,
            log_level="warning",
            lifespan="off",
            ws="none",
            http="h11",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert self._thread.is_alive(), "the server did not start"
            assert time.monotonic() < deadline, "the server did not start in time"
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=20)
            assert not self._thread.is_alive()
        self._server = self._thread = None


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.database.engine.dispose()


@pytest.fixture
def admin(live: LiveServer) -> Iterator[TestClient]:
    """The console side, in-process on the same database: an administrator and a unit."""
    with TestClient(live.app, base_url="https://testserver") as client:
        setup_admin(client, live.database)
        csrf = login(client)
        answer = client.post(
            "/api/v1/units",
            json={"name": "Sở Y tế", "kind": "department", "parent_id": None},
            headers={"X-CSRF-Token": csrf},
        )
        assert answer.status_code == 201, answer.text
        client.headers["X-CSRF-Token"] = csrf
        client.unit_id = answer.json()["id"]  # type: ignore[attr-defined]
        yield client


def _token(admin: TestClient) -> str:
    body = {"name": "đợt cài đặt", "unit_id": admin.unit_id}  # type: ignore[attr-defined]
    answer = admin.post("/api/v1/enrollment-tokens", json=body)
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["token"]
    return token


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "agent"


def _agent(state_dir: Path, *args: str) -> Result:
    env = {"GARRISON_AGENT_STATE_DIR": str(state_dir), "GARRISON_AGENT_BACKOFF_BASE": "0.5"}
    return CliRunner().invoke(cli, ["agent", *args], env=env, catch_exceptions=False)


def _enroll(live: LiveServer, admin: TestClient, state_dir: Path, pin: str | None = None) -> Result:
    pin = pin or live.tls.fingerprint
    return _agent(state_dir, "enroll", "--server", live.url, "--token", _token(admin), "--fingerprint", pin)


def _daemon(state_dir: Path, clock: list[float]) -> tuple[Daemon, AgentClient]:
    settings = AgentSettings(state_dir=state_dir, backoff_base=0.5, backoff_cap=10.0)
    identity = identities.load(settings.identity_path)
    assert identity is not None
    # No idle connections kept: a server stopped under an idle TLS connection leaks its socket in the test process.
    context = ssl_context(identity.trust_pem, check_hostname=identity.check_hostname, pinned=True)
    transport = httpx2.HTTPTransport(verify=context, limits=httpx2.Limits(max_keepalive_connections=0))
    client = AgentClient.for_identity(identity, transport=transport, timeout=10)
    daemon = Daemon(
        settings,
        identity,
        open_outbox(settings),
        client,
        engine_loader=lambda s: (Engine(SignatureDatabase.empty()), None),
        clock=lambda: clock[0],
    )
    return daemon, client


def _samples(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "eicar.com").write_bytes(EICAR)
    (folder / "hoá đơn.zip").write_bytes(zip_bytes({"eicar.com": EICAR}))
    (folder / "sạch.txt").write_text("không có gì")
    return folder


def _detections(admin: TestClient) -> list[dict[str, Any]]:
    answer = admin.get("/api/v1/detections")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def test_wrong_fingerprint_is_refused(live: LiveServer, admin: TestClient, state_dir: Path) -> None:
    other = fingerprint(ssl.PEM_cert_to_DER_cert(tls.make_self_signed(["127.0.0.1"])[0].decode()))
    result = _enroll(live, admin, state_dir, pin=other)
    assert result.exit_code == 1
    assert live.tls.fingerprint in result.output and other in result.output
    assert "Nothing was sent" in result.output and "Traceback" not in result.output
    assert not (state_dir / "identity.json").exists()
    assert admin.get("/api/v1/agents").json() == []


def test_agent_life_against_the_real_server(
    live: LiveServer, admin: TestClient, state_dir: Path, tmp_path: Path
) -> None:
    # The operator reads the fingerprint on the server, the agent enrolls with it.
    shown = CliRunner().invoke(cli, ["server", "fingerprint"], env={"GARRISON_DATA_DIR": str(live.data_dir)})
    assert shown.exit_code == 0 and shown.output.strip() == live.tls.fingerprint
    enrolled = _enroll(live, admin, state_dir, pin=shown.output.strip().replace(":", "").lower())
    assert enrolled.exit_code == 0, enrolled.output
    identity = identities.load(state_dir / "identity.json")
    assert identity is not None and identity.trust == "pinned" and identity.check_hostname
    assert stat.S_IMODE((state_dir / "identity.json").stat().st_mode) == 0o600
    assert identity.agent_id in enrolled.output and "garrison agent run" in enrolled.output
    status = _agent(state_dir, "status")
    assert status.exit_code == 0 and identity.agent_id in status.output and "0 event(s)" in status.output

    # Heartbeat over pinned TLS: the server records the inventory.
    clock = [100.0]
    daemon, client = _daemon(state_dir, clock)
    with client, daemon.outbox:
        interval = daemon.step()
        assert 54 <= interval <= 66
        agent = admin.get(f"/api/v1/agents/{identity.agent_id}").json()
        assert agent["state"] == "online" and agent["inventory"]["hostname"] == socket.gethostname()

        # The server goes away; a scan still queues its detections; the daemon backs off.
        live.stop()
        scanned = _agent(state_dir, "scan", str(_samples(tmp_path / "first")))
        assert scanned.exit_code == 1, scanned.output  # something found
        assert "2 detection(s) queued" in scanned.output and "could not report now" in scanned.output
        clock[0] += interval
        wait = daemon.step()
        assert 0 <= wait <= 0.5 and "cannot reach the server" in str(daemon.last_error)
        assert len(daemon.outbox) == 2

        # It comes back: the events arrive, once.
        live.start()
        clock[0] += wait
        daemon.step()
        assert len(daemon.outbox) == 0
        first = _detections(admin)
        assert len(first) == 2 and len({d["id"] for d in first}) == 2

        # A proxy loses the answer to the next batch: the resend is recognised, nothing is doubled.
        live.faults.lose_events = 1
        scanned = _agent(state_dir, "scan", str(_samples(tmp_path / "second")))
        assert "could not report now" in scanned.output and "502" in scanned.output
        assert len(_detections(admin)) == 4  # stored, though the agent did not hear it
        clock[0] += 1
        daemon.step()
        assert len(daemon.outbox) == 0 and len(_detections(admin)) == 4

        # Load shedding: the agent waits as long as Retry-After says, and not a request sooner.
        live.faults.shed = 1
        daemon._next_heartbeat = clock[0]
        assert daemon.step() == 3.0
        clock[0] += 3
        assert daemon.step() > 50

    # Revoked in the console: the agent stops and says to enroll again.
    assert admin.post(f"/api/v1/agents/{identity.agent_id}/revoke").status_code == 200
    ran = _agent(state_dir, "run")
    assert ran.exit_code == 78
    assert "enroll again" in ran.output and "garrison agent enroll" in ran.output


def test_a_replaced_server_certificate_is_not_trusted(live: LiveServer, admin: TestClient, state_dir: Path) -> None:
    assert _enroll(live, admin, state_dir).exit_code == 0
    live.stop()
    live.tls.cert.unlink()
    live.tls = tls.ensure_self_signed(live.data_dir, ["127.0.0.1"])  # a new key and certificate
    live.start()
    clock = [0.0]
    daemon, client = _daemon(state_dir, clock)
    with client, daemon.outbox:
        wait = daemon.step()
        assert wait > 0 and isinstance(daemon.last_error, UntrustedServer)
        assert "enroll again with the new fingerprint" in str(daemon.last_error)


def test_server_run_serves_https_with_its_own_certificate(tmp_path: Path) -> None:
    """``garrison server run`` as an operator starts it: a certificate is made once, its fingerprint printed."""
    port = _free_port()
    env = {
        **os.environ,
        "GARRISON_DATA_DIR": str(tmp_path),
        "GARRISON_DATABASE_URL": "",
        "GARRISON_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "garrison.cli", "server", "run", "--tls-name", "garrison.so-yte.example"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        der = b""
        deadline = time.monotonic() + 60
        while not der:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the server did not start"
            with contextlib.suppress(Exception):
                der = fetch_certificate("127.0.0.1", port, 1.0)
            time.sleep(0.05)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    files = tls.TlsFiles(tmp_path / tls.CERT_NAME, tmp_path / tls.KEY_NAME)
    assert fingerprint(der) == files.fingerprint
    assert f"--fingerprint {files.fingerprint}" in output and "created a self-signed TLS certificate" in output
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert host_in_certificate("garrison.so-yte.example", der) and host_in_certificate("localhost", der)


def test_agent_run_stops_cleanly_on_sigterm(live: LiveServer, admin: TestClient, state_dir: Path) -> None:
    assert _enroll(live, admin, state_dir).exit_code == 0
    identity = identities.load(state_dir / "identity.json")
    assert identity is not None
    env = {**os.environ, "GARRISON_AGENT_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "garrison.cli", "agent", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not (admin.get(f"/api/v1/agents/{identity.agent_id}").json()["inventory"] or {}).get("hostname"):
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "no heartbeat from the agent"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "agent stopped" in output and "Traceback" not in output
