"""Federation between two real ``garrison server run`` processes on this machine, each with its own data directory
and database (the child on SQLite; the parent on SQLite, and on PostgreSQL in the second parametrisation).

The parent's administrator registers the child over the API; ``garrison server federation join`` on the child pins
the parent's certificate (a wrong fingerprint is refused first, and nothing is saved); the child enrolls a computer
that reports a detection; ``garrison server federation push`` sends the figures; the parent's API and console show
the child fresh, with its computer and its detection.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from garrison.server import tls
from tests.conftest import free_port
from tests.server.conftest import PASSWORD, postgres_database

STARTUP_SECONDS = 60
GARRISON = [sys.executable, "-m", "garrison.cli"]


@dataclass
class Server:
    name: str
    env: dict[str, str]
    data_dir: Path
    port: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def fingerprint(self) -> str:
        return tls.certificate_fingerprint(self.data_dir / tls.CERT_NAME)

    def cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*GARRISON, "server", *arguments], capture_output=True, text=True, env=self.env, check=False, timeout=120
        )

    def client(self) -> httpx2.Client:
        context = ssl.create_default_context(cafile=str(self.data_dir / tls.CERT_NAME))
        return httpx2.Client(base_url=self.url, verify=context, timeout=30)

    def login(self, client: httpx2.Client) -> dict[str, str]:
        answer = client.post("/api/v1/auth/login", json={"username": "quantri", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return {"X-CSRF-Token": answer.json()["csrf_token"]}


def _start(tmp_path: Path, name: str, database_url: str) -> Server:
    data_dir = tmp_path / name
    env = {
        **os.environ,
        "GARRISON_DATA_DIR": str(data_dir),
        "GARRISON_DATABASE_URL": database_url,
        "GARRISON_PASSWORD_TIME_COST": "1",
        "GARRISON_PASSWORD_MEMORY_KIB": "64",
        "GARRISON_UPDATES_CHECK_SECONDS": "0",
        # Pushes by the command only: the test decides when (no background pass racing it).
        "GARRISON_FEDERATION_PUSH_SECONDS": "0",
        "PYTHONUNBUFFERED": "1",
    }
    server = Server(name, env, data_dir, free_port(), tmp_path / f"{name}.log")
    tls.ensure_self_signed(data_dir, tls.subject_names("127.0.0.1"))
    created = subprocess.run(
        [*GARRISON, "server", "create-admin", "--username", "quantri", "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    command = [*GARRISON, "server", "run", "--host", "127.0.0.1", "--port", str(server.port)]
    with server.log.open("wb") as output:
        server.popen = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    return server


def _wait_ready(servers: list[Server]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    for server in servers:
        context = ssl.create_default_context(cafile=str(server.data_dir / tls.CERT_NAME))
        while True:
            assert server.popen is not None and server.popen.poll() is None, server.log.read_text()
            try:
                if httpx2.get(f"{server.url}/healthz", verify=context, timeout=2).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{server.name} not ready:\n{server.log.read_text()}"
            time.sleep(0.1)


@pytest.fixture(params=["sqlite", "postgresql"])
def parent_database(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
    else:
        yield from postgres_database()


@pytest.fixture
def servers(tmp_path: Path, parent_database: str) -> Iterator[tuple[Server, Server]]:
    started: list[Server] = []
    try:
        started.append(_start(tmp_path, "province", parent_database))
        started.append(_start(tmp_path, "district", ""))
        _wait_ready(started)
        yield started[0], started[1]
    finally:
        for server in started:
            if server.popen is not None and server.popen.poll() is None:
                server.popen.terminate()
        for server in started:
            if server.popen is not None:
                try:
                    server.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.popen.kill()
                    server.popen.wait()


def _unit(client: httpx2.Client, headers: dict[str, str], name: str, kind: str, parent: int | None) -> int:
    answer = client.post("/api/v1/units", json={"name": name, "kind": kind, "parent_id": parent}, headers=headers)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _detection() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "path": "/home/canbo/Tải về/hoa-don.exe",
        "name": "Win.Trojan.Agent-1",
        "kind": "hash",
        "sha256": "ab" * 32,
        "size": 68,
        "action": "quarantine",
    }


def test_a_child_server_reports_to_its_parent(servers: tuple[Server, Server]) -> None:
    province, district = servers
    with province.client() as parent, district.client() as child:
        # The parent's administrator registers the district's server for the district's unit of the province.
        headers = province.login(parent)
        top = _unit(parent, headers, "Tỉnh Bắc Ninh", "province", None)
        unit = _unit(parent, headers, "Huyện Gia Bình", "district", top)
        answer = parent.post(
            "/api/v1/federation/children", json={"name": "Huyện Gia Bình", "unit_id": unit}, headers=headers
        )
        assert answer.status_code == 201, answer.text
        registered = answer.json()
        assert registered["command"] == (
            f"garrison server federation join {province.url} {registered['token']} --fingerprint {province.fingerprint}"
        )

        # A wrong fingerprint: refused before anything is sent, and nothing saved.
        wrong = district.cli("federation", "join", province.url, registered["token"], "--fingerprint", "00" * 32)
        assert wrong.returncode != 0 and "Nothing was sent" in wrong.stderr
        assert not (district.data_dir / "federation" / "parent.json").exists()

        # The command the parent's answer gave, run on the child.
        joined = district.cli(*registered["command"].split()[2:])
        assert joined.returncode == 0, joined.stderr
        assert "Tỉnh Bắc Ninh" in joined.stdout and "Huyện Gia Bình" in joined.stdout
        key = district.data_dir / "federation" / "child-key.pem"
        assert key.stat().st_mode & 0o777 == 0o600
        status = district.cli("federation", "status")
        assert (
            status.returncode == 0 and province.fingerprint in status.stdout and "last push:   never" in status.stdout
        )

        # The district's own tree: one computer that found one file.
        child_headers = district.login(child)
        district_unit = _unit(child, child_headers, "Huyện Gia Bình", "district", None)
        answer = child.post(
            "/api/v1/enrollment-tokens", json={"name": "đợt 1", "unit_id": district_unit}, headers=child_headers
        )
        assert answer.status_code == 201, answer.text
        child.cookies.clear()
        enrolled = child.post(
            "/api/v1/agent/enroll",
            json={"token": answer.json()["token"], "hostname": "may-xa-01", "os": "Linux", "os_version": "Debian 12"},
        ).json()
        agent = {"Authorization": f"Agent {enrolled['agent_id']}:{enrolled['secret']}"}
        answer = child.post("/api/v1/agent/events", json={"detections": [_detection()]}, headers=agent)
        assert answer.status_code == 200, answer.text

        before_push = datetime.now(UTC)
        pushed = district.cli("federation", "push")
        assert pushed.returncode == 0, pushed.stderr

        # The parent shows the child, fresh, with its figures, and the totals.
        headers = province.login(parent)
        children = parent.get("/api/v1/federation/children", headers=headers).json()
        assert [c["name"] for c in children] == ["Huyện Gia Bình"]
        shown = children[0]
        assert shown["state"] == "fresh" and shown["unit_id"] == unit
        received = datetime.fromisoformat(shown["received_at"])
        assert before_push - timedelta(seconds=5) <= received <= datetime.now(UTC)
        figures = shown["figures"]
        assert (figures["enrolled"], figures["active"], figures["online"], figures["detections"]) == (1, 1, 1, 1)
        assert (figures["infected_endpoints"], figures["removed"]) == (1, 1)
        totals = parent.get("/api/v1/federation/totals", headers=headers).json()
        assert totals["children"] == 1 and totals["figures"]["detections"] == 1
        parent.cookies.set("garrison_lang", "en")
        page = parent.get("/federation")
        assert page.status_code == 200 and 'data-name="Huyện Gia Bình"' in page.text
        assert 'data-state="fresh"' in page.text and 'data-cell="detections">1<' in page.text

        # The child's status says when it pushed; after the parent revokes it, the next push fails and says why.
        status = district.cli("federation", "status")
        assert "last push:   never" not in status.stdout and "last error" not in status.stdout
        answer = parent.post(f"/api/v1/federation/children/{shown['id']}/revoke", headers=headers)
        assert answer.status_code == 200, answer.text
        refused = district.cli("federation", "push")
        assert refused.returncode != 0 and "revoked" in refused.stderr
        status = district.cli("federation", "status")
        assert "last error" in status.stdout and "revoked" in status.stdout
        left = district.cli("federation", "leave", "--yes")
        assert left.returncode == 0 and not (district.data_dir / "federation").exists()
