"""Two real ``garrison server run`` processes on one PostgreSQL database, as docs/server.md "Several server
processes" describes: started at the same moment on a fresh database (both migrate; the advisory lock makes the
second wait), one certificate and key for both, and each process sees what the other wrote.

Needs PostgreSQL (``GARRISON_TEST_POSTGRES``, skipped when unreachable unless ``GARRISON_REQUIRE_POSTGRES=1``).
"""

from __future__ import annotations

import concurrent.futures
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import create_engine, text

from garrison.server import tls
from tests.conftest import free_port as _free_port
from tests.server.conftest import PASSWORD, postgres_database

STARTUP_SECONDS = 30


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (no schema: the servers migrate it), dropped at the end."""
    yield from postgres_database()


@dataclass
class Process:
    name: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Cluster:
    env: dict[str, str]
    cert: Path
    a: Process
    b: Process

    def client(self, process: Process, **options: Any) -> httpx2.Client:
        context = ssl.create_default_context(cafile=str(self.cert))
        return httpx2.Client(base_url=process.url, verify=context, timeout=30, **options)


def _wait_ready(processes: list[Process], cert: Path) -> None:
    context = ssl.create_default_context(cafile=str(cert))
    waiting = list(processes)
    deadline = time.monotonic() + STARTUP_SECONDS
    while waiting:
        for process in list(waiting):
            assert process.popen.poll() is None, f"server {process.name} exited:\n{process.output()}"
            try:
                if httpx2.get(f"{process.url}/healthz", verify=context, timeout=2).status_code == 200:
                    waiting.remove(process)
            except httpx2.HTTPError:
                pass
        assert time.monotonic() < deadline, "servers not ready:\n" + "\n".join(p.output() for p in waiting)
        time.sleep(0.1)


@pytest.fixture
def cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    env = {
        **os.environ,
        "GARRISON_DATABASE_URL": database_url,
        "GARRISON_DATA_DIR": str(tmp_path / "shared"),
        "GARRISON_PASSWORD_TIME_COST": "1",
        "GARRISON_PASSWORD_MEMORY_KIB": "64",
        "GARRISON_LOGIN_ATTEMPTS": "3",
        "PYTHONUNBUFFERED": "1",
    }
    # One certificate and key for every process (agents pin its fingerprint), made before they start.
    files = tls.ensure_self_signed(tmp_path / "shared", tls.subject_names("127.0.0.1"))
    processes: list[Process] = []
    try:
        for name in ("a", "b"):  # started back to back: both migrate the empty database at the same moment
            port = _free_port()
            log = tmp_path / f"server-{name}.log"
            command = [sys.executable, "-m", "garrison.cli", "server", "run", "--host", "127.0.0.1"]
            command += ["--port", str(port), "--tls-cert", str(files.cert), "--tls-key", str(files.key)]
            own = {**env, "GARRISON_DATA_DIR": str(tmp_path / name)}  # nothing in it matters with PostgreSQL
            with log.open("wb") as output:
                popen = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=own)
            processes.append(Process(name, port, log, popen))
        _wait_ready(processes, files.cert)
        yield Cluster(env, files.cert, processes[0], processes[1])
    finally:
        for process in processes:
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in processes:
            try:
                process.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()


def _detection(number: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "path": f"/home/nv/Downloads/hoa-don-{number}.exe",
        "name": "Eicar-Signature",
        "kind": "hash",
        "sha256": f"{number:064x}",
        "size": 68,
        "action": "quarantine",
    }


def _count(database_url: str, sql: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def test_two_processes_share_one_database(cluster: Cluster, database_url: str) -> None:
    a, b = cluster.a, cluster.b
    # Both migrated (one waited for the other) and serve the same certificate.
    assert _count(database_url, "SELECT count(*) FROM alembic_version") == 1
    fingerprint = tls.certificate_fingerprint(cluster.cert)
    assert fingerprint in a.output() and fingerprint in b.output()

    created = subprocess.run(
        [sys.executable, "-m", "garrison.cli", "server", "create-admin", "--username", "quantri", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=cluster.env,
        check=False,
    )
    assert created.returncode == 0, created.stderr

    # A console session opened through A is valid on B (sessions live in the database).
    with cluster.client(a) as on_a, cluster.client(b) as on_b:
        login = on_a.post("/api/v1/auth/login", json={"username": "quantri", "password": PASSWORD})
        assert login.status_code == 200, login.text
        session = {"garrison_session": login.cookies["garrison_session"]}
        headers = {"X-CSRF-Token": login.json()["csrf_token"]}
        on_b.cookies.update(session)
        on_a.cookies.update(session)
        assert on_b.get("/api/v1/auth/me").json()["username"] == "quantri"

        unit = on_b.post("/api/v1/units", json={"name": "Sở Y tế", "kind": "province"}, headers=headers)
        assert unit.status_code == 201, unit.text
        assert [u["name"] for u in on_a.get("/api/v1/units").json()] == ["Sở Y tế"]
        body = {"name": "two servers", "unit_id": unit.json()["id"], "max_uses": 5}
        token = on_a.post("/api/v1/enrollment-tokens", json=body, headers=headers)
        assert token.status_code == 201, token.text

        # An agent enrolled through A heartbeats through B.
        enrolled = on_a.post(
            "/api/v1/agent/enroll", json={"token": token.json()["token"], "hostname": "pc-01", "os": "Linux"}
        )
        assert enrolled.status_code == 201, enrolled.text
        agent = {"Authorization": f"Agent {enrolled.json()['agent_id']}:{enrolled.json()['secret']}"}
        inventory = {"hostname": "pc-01.so-yte", "os": "Linux", "agent_version": "0.9.0", "realtime_enabled": True}
        beat = on_b.post("/api/v1/agent/heartbeat", json={"inventory": inventory}, headers=agent)
        assert beat.status_code == 200, beat.text
        seen = on_a.get(f"/api/v1/agents/{enrolled.json()['agent_id']}").json()
        assert seen["hostname"] == "pc-01.so-yte" and seen["state"] == "online" and seen["realtime_enabled"]

        # The same batch to A, then retried to B: stored once.
        batch = {"detections": [_detection(n) for n in range(50)]}
        first = on_a.post("/api/v1/agent/events", json=batch, headers=agent)
        again = on_b.post("/api/v1/agent/events", json=batch, headers=agent)
        assert first.status_code == again.status_code == 200, (first.text, again.text)
        assert first.json()["duplicates"] == 0 and again.json()["duplicates"] == 50
        assert len(again.json()["accepted"]) == 50

        # Another batch sent to both at the same moment (a retry racing the original): still stored once.
        racing = {"detections": [_detection(n) for n in range(50, 150)]}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            sent = [pool.submit(c.post, "/api/v1/agent/events", json=racing, headers=agent) for c in (on_a, on_b)]
            answers = [future.result() for future in sent]
        assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
        assert all(len(answer.json()["accepted"]) == 100 for answer in answers)
        assert _count(database_url, "SELECT count(*) FROM detections") == 150
        for client in (on_a, on_b):
            listed = client.get("/api/v1/detections", params={"limit": 500})
            assert listed.status_code == 200 and len(listed.json()) == 150

        # Login throttling is counted in the database: failures through A count on B.
        for _ in range(3):
            wrong = on_a.post("/api/v1/auth/login", json={"username": "quantri", "password": "wrong password!"})
            assert wrong.status_code == 401
        refused = on_b.post("/api/v1/auth/login", json={"username": "quantri", "password": PASSWORD})
        assert refused.status_code == 429 and "Retry-After" in refused.headers

    for process in (a, b):
        assert "Traceback" not in process.output(), process.output()


def test_a_burst_of_enrollments_on_one_token_neither_hangs_nor_overuses_it(cluster: Cluster) -> None:
    """64 agents enrolling at once with one token (its row locked by each in turn): every request answers, and a
    10-use token is used exactly 10 times. With fewer endpoint threads than requests waiting for the lock, the
    lock holder could not get a thread to finish and commit, and the server hung."""
    created = subprocess.run(
        [sys.executable, "-m", "garrison.cli", "server", "create-admin", "--username", "quantri", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=cluster.env,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    with cluster.client(cluster.a, limits=httpx2.Limits(max_connections=64)) as client:
        login = client.post("/api/v1/auth/login", json={"username": "quantri", "password": PASSWORD})
        headers = {"X-CSRF-Token": login.json()["csrf_token"]}
        unit = client.post("/api/v1/units", json={"name": "Tỉnh", "kind": "province"}, headers=headers).json()
        tokens = {}
        for name, uses in (("open", None), ("ten", 10)):
            body = {"name": name, "unit_id": unit["id"], "max_uses": uses}
            tokens[name] = client.post("/api/v1/enrollment-tokens", json=body, headers=headers).json()["token"]
        client.cookies.clear()

        def enroll(token: str, number: int) -> int:
            body = {"token": token, "hostname": f"pc-{number:02}", "os": "Linux"}
            return client.post("/api/v1/agent/enroll", json=body, timeout=60).status_code

        with ThreadPoolExecutor(max_workers=64) as pool:
            opened = list(pool.map(lambda n: enroll(tokens["open"], n), range(64)))
            limited = list(pool.map(lambda n: enroll(tokens["ten"], n), range(64)))
    assert opened == [201] * 64
    assert sorted(limited) == [201] * 10 + [401] * 54
