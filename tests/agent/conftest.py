"""Fixtures of the agent tests that need a server: the real application in-process on SQLite and PostgreSQL (the
server tests' fixtures, rolled back after each test), an enrolled identity, and a daemon on a fake clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from garrison.agent.client import AgentClient, enroll, fingerprint
from garrison.agent.daemon import Daemon, open_outbox
from garrison.agent.identity import Identity
from garrison.agent.outbox import Outbox
from garrison.agent.settings import AgentSettings
from garrison.engine import Database, Engine
from garrison.protocol.enrollment import EnrollRequest
from garrison.server import tls
from tests.server import conftest as server_fixtures
from tests.server.conftest import enrollment_token, login

# The application on each database (SQLite, PostgreSQL), rolled back after each test: the server tests' fixtures.
engine = server_fixtures.engine
database = server_fixtures.database
settings = server_fixtures.settings
client = server_fixtures.client
tree = server_fixtures.tree

SERVER = "https://garrison.test:8443"


class AppTransport(httpx2.BaseTransport):
    """Routes the agent's requests into the application in-process; ``fail`` may intercept them first."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.fail: Callable[[httpx2.Request], httpx2.Response | None] | None = None
        self.seen: list[str] = []

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.seen.append(request.url.path)
        if self.fail is not None:
            answer = self.fail(request)
            if answer is not None:
                return answer
        response = self.client.send(request)
        return httpx2.Response(response.status_code, headers=response.headers, content=response.read())


class Clock:
    """A monotonic clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` (for what real threads and the kernel do) until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def certificate() -> bytes:
    cert_pem, _ = tls.make_self_signed(["garrison.test"])
    return x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)


@pytest.fixture
def transport(client: TestClient) -> AppTransport:
    return AppTransport(client)


@pytest.fixture
def identity(client: TestClient, tree: dict[str, int], transport: AppTransport, certificate: bytes) -> Identity:
    request = EnrollRequest(token=enrollment_token(client, tree["hospital"]), hostname="may-tram-01", os="Linux")
    return enroll(
        SERVER,
        request,
        pinned_fingerprint=fingerprint(certificate),
        transport=transport,
        certificate_fetcher=lambda host, port, timeout: certificate,
    )


@pytest.fixture
def agent_settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(state_dir=tmp_path / "agent", backoff_base=2.0, backoff_cap=60.0, batch_size=2)


@pytest.fixture
def outbox(agent_settings: AgentSettings) -> Iterator[Outbox]:
    with open_outbox(agent_settings) as box:
        yield box


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def daemon(
    agent_settings: AgentSettings, identity: Identity, outbox: Outbox, transport: AppTransport, clock: Clock
) -> Iterator[Daemon]:
    agent_client = AgentClient.for_identity(identity, transport=transport)
    with agent_client:
        yield Daemon(
            agent_settings,
            identity,
            outbox,
            agent_client,
            engine_loader=lambda s: (Engine(Database.empty()), None),
            clock=clock,
        )


def admin_get(client: TestClient, path: str) -> Any:
    login(client)
    answer = client.get(path)
    client.cookies.clear()
    assert answer.status_code == 200, answer.text
    return answer.json()
