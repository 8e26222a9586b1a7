"""Operations: load shedding for agents, the /metrics endpoint, JSON logs without secrets."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from garrison.server.app import create_app
from garrison.server.db import Database
from garrison.server.operations.logging import JsonFormatter, request_id
from garrison.server.operations.shedding import retry_after
from garrison.server.settings import ServerSettings
from tests.server.conftest import PASSWORD, login
from tests.server.test_agents_api import _auth, _enroll, _event, _token

METRICS_TOKEN = "m3trics-" + "s" * 32


def _client(app: FastAPI, host: str = "testclient") -> Iterator[TestClient]:
    with TestClient(app, base_url="https://testserver", client=(host, 50000)) as client:
        yield client


@pytest.fixture
def limited(database: Database, settings: ServerSettings) -> Iterator[tuple[TestClient, threading.Event]]:
    """An app answering one agent request at a time, with a test-only agent route that waits for an event."""
    settings.agent_max_inflight = 1
    settings.agent_retry_after_seconds = 30
    app = create_app(settings, database, run_migrations=False)
    entered, release = threading.Event(), threading.Event()

    @app.post("/api/v1/agent/test-block")
    def block() -> dict[str, str]:
        entered.set()
        assert release.wait(10)
        return {"status": "released"}

    app.state.test_entered = entered
    for client in _client(app):
        yield client, release


def test_agents_are_shed_with_retry_after_and_people_are_not(
    limited: tuple[TestClient, threading.Event], tree: dict[str, int]
) -> None:
    client, release = limited
    enrolled = _enroll(client, _token(client, tree["hospital"]))
    beat = {"inventory": {"hostname": "may-tram-01"}}
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(client.post, "/api/v1/agent/test-block")
        try:
            assert client.app.state.test_entered.wait(10)  # type: ignore[attr-defined]
            refused = client.post("/api/v1/agent/heartbeat", json=beat, headers=_auth(enrolled))
            assert refused.status_code == 503
            assert refused.json()["error"] == "busy"
            assert 24 <= int(refused.headers["Retry-After"]) <= 36
            # People are never shed.
            login(client)
            assert client.get("/api/v1/agents").status_code == 200
            client.cookies.clear()
        finally:
            release.set()
        assert held.result(10).status_code == 200
    answered = client.post("/api/v1/agent/heartbeat", json=beat, headers=_auth(enrolled))
    assert answered.status_code == 200, answered.text
    metrics = client.app.state.metrics.registry  # type: ignore[attr-defined]
    assert metrics.get_sample_value("garrison_agent_requests_shed_total") == 1


def test_retry_after_jitter_stays_in_bounds() -> None:
    values = {retry_after(30) for _ in range(200)}
    assert min(values) >= 24
    assert max(values) <= 36
    assert len(values) > 1
    assert retry_after(0.1) == 1


def test_metrics_need_the_token(database: Database, settings: ServerSettings, tree: dict[str, int]) -> None:
    settings.metrics_token = METRICS_TOKEN
    for client in _client(create_app(settings, database, run_migrations=False)):
        enrolled = _enroll(client, _token(client, tree["hospital"]))
        _enroll(client, _token(client, tree["education"]), hostname="may-tram-02")
        client.post("/api/v1/agent/events", json={"detections": [_event(), _event()]}, headers=_auth(enrolled))
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        text = answer.text
        assert 'garrison_agents{state="online"} 2.0' in text
        assert 'garrison_agents{state="stale"} 0.0' in text
        assert "garrison_detections_ingested_total 2.0" in text
        assert 'route="/api/v1/agent/events",status="200"' in text
        assert (
            'garrison_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/api/v1/agent/enroll"}'
            in (text)
        )
        assert "garrison_agent_requests_shed_total 0.0" in text
        assert "/metrics" not in client.get("/openapi.json").text


def test_metrics_without_token_only_from_loopback(database: Database, settings: ServerSettings) -> None:
    app = create_app(settings, database, run_migrations=False)
    for remote in _client(app, "192.0.2.7"):
        assert remote.get("/metrics").status_code == 403
    for local in _client(app, "127.0.0.1"):
        local.get("/api/v1/units/12345")
        answer = local.get("/metrics")
        assert answer.status_code == 200
        assert 'route="/api/v1/units/{unit_id}",status="401"' in answer.text
        assert "12345" not in answer.text


def test_json_logs_carry_request_ids_and_no_secrets(client: TestClient, tree: dict[str, int]) -> None:
    formatter = JsonFormatter()
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    capture = Capture(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(capture)
    level = root.level
    root.setLevel(logging.DEBUG)
    wrong_password = "sai-mat-khau-" + "x" * 20
    try:
        refused = client.post("/api/v1/auth/login", json={"username": "admin", "password": wrong_password})
        assert refused.status_code == 401
        csrf = login(client)
        made = client.post("/api/v1/auth/tokens", json={"name": "tự động"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        api_token = made.json()["token"]
        client.cookies.clear()
        assert client.get("/api/v1/units", headers={"Authorization": f"Bearer {api_token}"}).status_code == 200
        answer = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
        assert answer.headers["X-Request-ID"] == "abc-123"
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
    entries = [json.loads(line) for line in lines]
    access = [e for e in entries if e["logger"] == "garrison.access"]
    assert any(e["path"] == "/api/v1/auth/login" and e["status"] == 401 for e in access)
    assert any(e.get("request_id") == "abc-123" and e["path"] == "/healthz" for e in access)
    assert all(e["request_id"] and {"time", "level", "message"} <= e.keys() for e in access)
    everything = "\n".join(lines)
    for secret in (wrong_password, PASSWORD, api_token):
        assert secret not in everything


def test_json_formatter_masks_secret_fields() -> None:
    record = logging.LogRecord("garrison.test", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    record.authorization = "Bearer gst_secret"
    record.hostname = "may-01"
    token = request_id.set("req-1")
    try:
        entry = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert entry["message"] == "hello world"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "garrison.test"
    assert entry["request_id"] == "req-1"
    assert entry["authorization"] == "[redacted]"
    assert entry["hostname"] == "may-01"
