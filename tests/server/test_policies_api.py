"""Policies: layers down the tree and per group, what agents receive (versioned), who may change what, and the
fleet-wide allow-list."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token, login

INVENTORY = {"hostname": "may-tram-01", "os": "Linux"}


def _admin(client: TestClient, username: str = "admin") -> dict[str, str]:
    client.cookies.clear()
    return {"X-CSRF-Token": login(client, username)}


def _policy(client: TestClient, headers: dict[str, str], owner: int, name: str, **settings: Any) -> int:
    body = {"name": name, "owner_unit_id": owner, "settings": settings}
    answer = client.post("/api/v1/policies", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _assign(client: TestClient, headers: dict[str, str], unit: int, policy: int | None) -> int:
    return client.put(f"/api/v1/units/{unit}/policy", json={"policy_id": policy}, headers=headers).status_code


def _beat(client: TestClient, enrolled: dict[str, Any], revision: str = "") -> dict[str, Any]:
    body = {"inventory": {**INVENTORY, "policy_revision": revision}}
    answer = client.post("/api/v1/agent/heartbeat", json=body, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text
    beat: dict[str, Any] = answer.json()
    return beat


def _fetch(client: TestClient, enrolled: dict[str, Any]) -> dict[str, Any]:
    answer = client.get("/api/v1/agent/policy", headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def test_layers_merge_down_the_tree_then_the_group(client: TestClient, tree: dict[str, int]) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    defaults = _fetch(client, enrolled)
    assert defaults["sources"] == []  # built-in defaults only
    assert defaults["policy"]["action"] == "report"
    assert defaults["policy"]["heartbeat_seconds"] == 60

    headers = _admin(client)
    province = _policy(
        client,
        headers,
        tree["province"],
        "Chính sách chung của tỉnh",
        action="quarantine",
        schedules=[{"cron": "0  12 * * 1-5", "random_delay_minutes": 60}],
        realtime_paths=["/home"],
    )
    health = _policy(client, headers, tree["health"], "Ngành y tế", realtime_paths=["/srv/his", "/home"])
    servers = _policy(client, headers, tree["province"], "Máy chủ", heartbeat_seconds=300, action="delete")
    assert _assign(client, headers, tree["province"], province) == 204
    assert _assign(client, headers, tree["health"], health) == 204
    group = client.post(
        "/api/v1/groups",
        json={"name": "Máy chủ bệnh viện", "unit_id": tree["health"], "policy_id": servers},
        headers=headers,
    )
    assert group.status_code == 201, group.text
    client.cookies.clear()

    document = _fetch(client, enrolled)
    policy = document["policy"]
    assert policy["action"] == "quarantine"  # from the province
    assert policy["schedules"] == [{"cron": "0 12 * * 1-5", "paths": [], "random_delay_minutes": 60}]
    assert policy["realtime_paths"] == ["/srv/his", "/home"]  # the department's list replaces the province's
    assert policy["heartbeat_seconds"] == 60  # nobody set it yet
    assert [s["name"] for s in document["sources"]] == ["Chính sách chung của tỉnh", "Ngành y tế"]

    # The heartbeat names the revision to apply; the agent fetches when it is not the one it has.
    beat = _beat(client, enrolled)
    assert beat["policy_revision"] == document["revision"]

    headers = _admin(client)
    put = client.put(
        f"/api/v1/agents/{enrolled['agent_id']}/group", json={"group_id": group.json()["id"]}, headers=headers
    )
    assert put.status_code == 204, put.text
    seen = client.get(f"/api/v1/agents/{enrolled['agent_id']}/policy").json()
    client.cookies.clear()
    grouped = _fetch(client, enrolled)
    assert grouped == {**seen, "issued_at": grouped["issued_at"]}
    assert grouped["policy"]["action"] == "delete"  # the group wins over the units
    assert grouped["policy"]["heartbeat_seconds"] == 300
    assert [s["applies_to"] for s in grouped["sources"]][-1].startswith("group ")
    assert grouped["revision"] != document["revision"]
    beat = _beat(client, enrolled, grouped["revision"])
    assert 270 <= beat["next_seconds"] <= 330  # the policy's interval, with jitter
    assert beat["policy_revision"] == grouped["revision"]

    # Changing a policy changes the revision and the version.
    headers = _admin(client)
    changed = client.put(
        f"/api/v1/policies/{servers}",
        json={"name": "Máy chủ", "settings": {"heartbeat_seconds": 120}},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    client.cookies.clear()
    assert _beat(client, enrolled)["policy_revision"] != grouped["revision"]
    assert _fetch(client, enrolled)["policy"]["action"] == "quarantine"  # the group no longer sets it
    # The server records which revision the agent applies, so people can see who is behind.
    headers = _admin(client)
    [agent] = client.get("/api/v1/agents").json()
    assert agent["id"] == enrolled["agent_id"]
    events = client.get("/api/v1/audit").json()
    actions = {e["action"] for e in events}
    assert {"policy.create", "policy.update", "policy.assign", "group.create", "agent.group"} <= actions


def test_invalid_settings_are_refused_with_the_reason(client: TestClient, tree: dict[str, int]) -> None:
    headers = _admin(client)
    cases = [
        ({"colour": "red"}, "unknown policy settings: colour"),
        ({"schedules": [{"cron": "every day"}]}, "five fields"),
        ({"schedules": [{"cron": "61 * * * *"}]}, "not a valid schedule"),
        ({"action": "burn"}, "action"),
        ({"heartbeat_seconds": 1}, "heartbeat_seconds"),
    ]
    for settings, reason in cases:
        body = {"name": "sai", "owner_unit_id": tree["province"], "settings": settings}
        answer = client.post("/api/v1/policies", json=body, headers=headers)
        assert answer.status_code == 400, (settings, answer.text)
        assert reason in answer.json()["message"], answer.json()
    assert client.get("/api/v1/policies").json() == []


def test_who_may_see_change_and_assign(client: TestClient, tree: dict[str, int]) -> None:
    headers = _admin(client)
    province = _policy(client, headers, tree["province"], "Chung", action="quarantine")
    education = _policy(client, headers, tree["education"], "Giáo dục", action="report")
    assert _assign(client, headers, tree["province"], province) == 204

    headers = _admin(client, "yte.admin")
    seen = {p["name"] for p in client.get("/api/v1/policies").json()}
    assert seen == {"Chung"}  # the province's applies to them; education's does not concern them
    assert client.get(f"/api/v1/policies/{education}").status_code == 404
    answer = client.put(f"/api/v1/policies/{province}", json={"name": "Đổi", "settings": {}}, headers=headers)
    assert answer.status_code == 403
    assert "use it, not change it" in answer.json()["message"]
    own = _policy(client, headers, tree["health"], "Y tế", realtime_enabled=False)
    assert _assign(client, headers, tree["hospital"], province) == 204  # may use an inherited policy below
    assert _assign(client, headers, tree["health"], own) == 204
    assert _assign(client, headers, tree["education"], own) == 404
    assert _assign(client, headers, tree["province"], own) == 404
    body = {"name": "x", "owner_unit_id": tree["province"], "settings": {}}
    assert client.post("/api/v1/policies", json=body, headers=headers).status_code == 404

    headers = _admin(client, "yte.audit")
    assert {p["name"] for p in client.get("/api/v1/policies").json()} == {"Chung", "Y tế"}
    body = {"name": "x", "owner_unit_id": tree["health"], "settings": {}}
    assert client.post("/api/v1/policies", json=body, headers=headers).status_code == 403
    assert _assign(client, headers, tree["hospital"], None) == 403

    headers = _admin(client)
    refused = client.delete(f"/api/v1/policies/{province}", headers=headers)
    assert refused.status_code == 409
    assert "in use" in refused.json()["message"]
    assert client.delete(f"/api/v1/policies/{education}", headers=headers).status_code == 204


def test_a_false_positive_is_allowed_on_every_computer(client: TestClient, tree: dict[str, int]) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    other = enroll_agent(client, enrollment_token(client, tree["education"]), "may-giao-duc")
    sha = "a" * 64
    event = detection_event(chain=[], sha256=sha, name="Win.Trojan.Gia-1", action="report")
    assert client.post("/api/v1/agent/events", json={"detections": [event]}, headers=agent_auth(enrolled)).is_success
    before = _fetch(client, other)
    assert before["allow_sha256"] == []

    headers = _admin(client, "yte.admin")  # a unit admin may not decide for the whole province
    answer = client.post("/api/v1/allowlist", json={"sha256": sha, "reason": "phần mềm kế toán"}, headers=headers)
    assert answer.status_code == 403

    headers = _admin(client)
    answer = client.post(
        f"/api/v1/detections/{event['id']}/allow", json={"reason": "phần mềm kế toán của Sở"}, headers=headers
    )
    assert answer.status_code == 201, answer.text
    assert client.get(f"/api/v1/detections/{event['id']}").json()["triage"] == "false_positive"
    assert [a["sha256"] for a in client.get("/api/v1/allowlist").json()] == [sha]
    client.cookies.clear()

    after = _fetch(client, other)
    assert after["allow_sha256"] == [sha]
    assert after["revision"] != before["revision"]
    assert _beat(client, other)["policy_revision"] == after["revision"]

    headers = _admin(client)
    assert client.delete(f"/api/v1/allowlist/{sha}", headers=headers).status_code == 204
    client.cookies.clear()
    assert _fetch(client, other)["allow_sha256"] == []


def test_moving_a_unit_changes_the_policy_its_computers_get(client: TestClient, tree: dict[str, int]) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    headers = _admin(client)
    education = _policy(client, headers, tree["education"], "Giáo dục", action="delete")
    assert _assign(client, headers, tree["education"], education) == 204
    client.cookies.clear()
    before = _beat(client, enrolled)["policy_revision"]
    assert _fetch(client, enrolled)["policy"]["action"] == "report"
    headers = _admin(client)
    moved = client.put(
        f"/api/v1/units/{tree['hospital']}",
        json={"name": "Bệnh viện", "kind": "unit", "parent_id": tree["education"]},
        headers=headers,
    )
    assert moved.status_code == 200, moved.text
    client.cookies.clear()
    after = _beat(client, enrolled)["policy_revision"]
    assert after != before
    assert _fetch(client, enrolled)["revision"] == after
    assert _fetch(client, enrolled)["policy"]["action"] == "delete"
