"""Enrollment, heartbeats, agent states, revocation and detection ingestion, through the HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from garrison.server.agents import service
from garrison.server.agents.models import Agent
from garrison.server.db import Database
from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token, login

_token = enrollment_token
_enroll = enroll_agent
_auth = agent_auth
_event = detection_event


def test_enroll_heartbeat_and_inventory(client: TestClient, tree: dict[str, int]) -> None:
    enrolled = _enroll(client, _token(client, tree["hospital"]))
    assert enrolled["unit_id"] == tree["hospital"]
    inventory = {
        "hostname": "may-tram-01",
        "os": "Linux",
        "ips": ["192.0.2.10"],
        "macs": ["02:00:00:00:00:01"],
        "agent_version": "0.1.0",
        "signature_version": "42",
        "realtime_enabled": True,
    }
    beat = client.post("/api/v1/agent/heartbeat", json={"inventory": inventory}, headers=_auth(enrolled))
    assert beat.status_code == 200, beat.text
    assert 54 <= beat.json()["next_seconds"] <= 66
    login(client)
    [agent] = client.get("/api/v1/agents").json()
    assert agent["state"] == "online"
    assert agent["inventory"]["ips"] == ["192.0.2.10"]
    assert agent["realtime_enabled"] is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"revoked": True}, "revoked"),
        ({"expires_at": datetime.now(UTC) - timedelta(minutes=1)}, "expired"),
        ({"max_uses": 0}, "as many times as allowed"),
    ],
)
def test_refused_enrollment_says_why(
    client: TestClient, database: Database, tree: dict[str, int], change: dict[str, Any], message: str
) -> None:
    token = _token(client, tree["health"])
    with database.session() as session:
        from garrison.server.agents.models import EnrollmentToken

        row = session.query(EnrollmentToken).one()
        for key, value in change.items():
            setattr(row, key, value)
    answer = client.post("/api/v1/agent/enroll", json={"token": token, "hostname": "x"})
    assert answer.status_code == 401
    assert message in answer.json()["message"]


def test_unknown_token_and_bad_credentials(client: TestClient, tree: dict[str, int]) -> None:
    assert client.post("/api/v1/agent/enroll", json={"token": "gse_" + "x" * 40, "hostname": "x"}).status_code == 401
    enrolled = _enroll(client, _token(client, tree["health"]))
    wrong = {"Authorization": f"Agent {enrolled['agent_id']}:nope"}
    assert (
        client.post("/api/v1/agent/heartbeat", json={"inventory": {"hostname": "x"}}, headers=wrong).status_code == 401
    )
    assert client.post("/api/v1/agent/heartbeat", json={"inventory": {"hostname": "x"}}).status_code == 401


def test_revoked_agent_is_refused_and_can_reenroll(client: TestClient, tree: dict[str, int]) -> None:
    token = _token(client, tree["health"])
    enrolled = _enroll(client, token)
    csrf = login(client)
    revoked = client.post(f"/api/v1/agents/{enrolled['agent_id']}/revoke", headers={"X-CSRF-Token": csrf})
    assert revoked.json()["state"] == "revoked"
    client.cookies.clear()
    refused = client.post("/api/v1/agent/heartbeat", json={"inventory": {"hostname": "x"}}, headers=_auth(enrolled))
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]
    again = _enroll(client, token)
    assert again["agent_id"] != enrolled["agent_id"]


def test_agent_states(database: Database, tree: dict[str, int], client: TestClient) -> None:
    enrolled = _enroll(client, _token(client, tree["health"]))
    now = datetime.now(UTC)
    with database.session() as session:
        agent = session.get(Agent, enrolled["agent_id"])
        assert agent is not None
        assert service.state_of(agent, 60, now).state is service.AgentState.ONLINE
        offline = service.state_of(agent, 60, now + timedelta(minutes=10))
        assert offline.state is service.AgentState.OFFLINE
        assert offline.since is not None and offline.since <= now
        assert service.state_of(agent, 60, now + timedelta(days=30)).state is service.AgentState.STALE


def test_detection_batches_are_idempotent(client: TestClient, tree: dict[str, int]) -> None:
    enrolled = _enroll(client, _token(client, tree["hospital"]))
    batch = {"detections": [_event(), _event(name="Win.Trojan.Agent-1", kind="body")]}
    first = client.post("/api/v1/agent/events", json=batch, headers=_auth(enrolled))
    assert first.status_code == 200 and first.json()["duplicates"] == 0
    retried = client.post("/api/v1/agent/events", json=batch, headers=_auth(enrolled))
    assert retried.json() == {**first.json(), "duplicates": 2}
    login(client)
    found = client.get("/api/v1/detections").json()
    assert sorted(d["name"] for d in found) == ["Eicar-Test-Signature", "Win.Trojan.Agent-1"]
    assert found[0]["unit_id"] == tree["hospital"] and found[0]["triage"] == "new"


def test_detection_times_are_stored_in_utc_whatever_offset_they_came_with(
    client: TestClient, tree: dict[str, int]
) -> None:
    """SQLite keeps a time's wall clock and drops its offset: 09:00+07:00 must be stored as 02:00 UTC."""
    enrolled = _enroll(client, _token(client, tree["hospital"]))
    batch = {"detections": [_event(occurred_at="2026-12-01T09:00:00+07:00"), _event(occurred_at="2026-12-01T03:00:00")]}
    assert client.post("/api/v1/agent/events", json=batch, headers=_auth(enrolled)).status_code == 200
    login(client)
    times = sorted(datetime.fromisoformat(d["occurred_at"]) for d in client.get("/api/v1/detections").json())
    assert times == [datetime(2026, 12, 1, 2, tzinfo=UTC), datetime(2026, 12, 1, 3, tzinfo=UTC)]


def test_invalid_events_are_refused_whole(client: TestClient, tree: dict[str, int]) -> None:
    enrolled = _enroll(client, _token(client, tree["hospital"]))
    bad = {"detections": [_event(), _event(md5="not-a-hash")]}
    answer = client.post("/api/v1/agent/events", json=bad, headers=_auth(enrolled))
    assert answer.status_code == 422
    login(client)
    assert client.get("/api/v1/detections").json() == []


def test_triage_is_audited_and_scoped(client: TestClient, tree: dict[str, int]) -> None:
    enrolled = _enroll(client, _token(client, tree["education"]))
    event = _event()
    client.post("/api/v1/agent/events", json={"detections": [event]}, headers=_auth(enrolled))
    csrf = login(client, "yte.admin")
    assert client.get("/api/v1/detections").json() == []
    assert client.get(f"/api/v1/detections/{event['id']}").status_code == 404
    assert (
        client.patch(
            f"/api/v1/detections/{event['id']}", json={"triage": "resolved"}, headers={"X-CSRF-Token": csrf}
        ).status_code
        == 404
    )
    client.cookies.clear()
    csrf = login(client)
    done = client.patch(
        f"/api/v1/detections/{event['id']}", json={"triage": "false_positive"}, headers={"X-CSRF-Token": csrf}
    )
    assert done.json()["triage"] == "false_positive"
    audit = client.get("/api/v1/audit").json()
    assert any(e["action"] == "detection.triage" and e["details"]["triage"] == "false_positive" for e in audit)


AGENT_ROUTES = [
    ("GET", "/api/v1/agents/{agent}"),
    ("POST", "/api/v1/agents/{agent}/revoke"),
    ("DELETE", "/api/v1/enrollment-tokens/{token}"),
]


@pytest.mark.parametrize(("method", "path"), AGENT_ROUTES)
def test_unit_admin_cannot_reach_other_units_agents(
    client: TestClient, tree: dict[str, int], database: Database, method: str, path: str
) -> None:
    enrolled = _enroll(client, _token(client, tree["education"]))
    from garrison.server.agents.models import EnrollmentToken

    with database.session() as session:
        token_id = session.query(EnrollmentToken).one().id
    csrf = login(client, "yte.admin")
    url = path.format(agent=enrolled["agent_id"], token=token_id)
    assert client.request(method, url, headers={"X-CSRF-Token": csrf}).status_code == 404
    assert client.get("/api/v1/agents").json() == []
    assert client.get("/api/v1/enrollment-tokens").json() == []
    body = {"name": "x", "unit_id": tree["education"]}
    assert client.post("/api/v1/enrollment-tokens", json=body, headers={"X-CSRF-Token": csrf}).status_code == 404


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/api/v1/enrollment-tokens", {"name": "x", "unit_id": 2**31}),
        ("POST", "/api/v1/enrollment-tokens", {"name": "x", "unit_id": 1, "max_uses": 2**63}),
        ("DELETE", "/api/v1/enrollment-tokens/9223372036854775808", None),
    ],
)
def test_ids_beyond_the_database_integers_are_invalid_not_a_crash(
    client: TestClient, tree: dict[str, int], method: str, url: str, body: dict[str, Any] | None
) -> None:
    """Found by the fuzzer: these were 500s (SQLite OverflowError, PostgreSQL integer out of range)."""
    csrf = login(client)
    answer = client.request(method, url, json=body, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 422, answer.text
