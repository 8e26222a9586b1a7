"""Every policy, group, task, quarantine and sample route, tried by a unit admin of one department on the other
department's objects: none is reached (404), and no list shows them."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token, login

ITEM = "fedcba9876543210" * 2
SAMPLE = b"MZ sample of the education department"


def _admin(client: TestClient) -> dict[str, str]:
    client.cookies.clear()
    return {"X-CSRF-Token": login(client)}


@pytest.fixture
def education(client: TestClient, tree: dict[str, int]) -> dict[str, Any]:
    """Objects of the education department, made by the province admin (and its computer)."""
    enrolled = enroll_agent(client, enrollment_token(client, tree["education"]), "may-giao-duc")
    event = detection_event(chain=[], sha256="c" * 64, quarantine_id=ITEM)
    client.post("/api/v1/agent/events", json={"detections": [event]}, headers=agent_auth(enrolled))
    headers = _admin(client)

    def made(path: str, body: dict[str, Any]) -> int:
        answer = client.post(path, json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"])

    policy = made("/api/v1/policies", {"name": "GD", "owner_unit_id": tree["education"], "settings": {}})
    group = made("/api/v1/groups", {"name": "Trường", "unit_id": tree["education"], "policy_id": policy})
    collect = made("/api/v1/tasks", {"kind": "collect", "agent_ids": [enrolled["agent_id"]], "params": {"path": "/x"}})
    client.cookies.clear()
    params = {"path": "/x", "sha256": hashlib.sha256(SAMPLE).hexdigest()}
    uploaded = client.put(
        f"/api/v1/agent/tasks/{collect}/sample", content=SAMPLE, params=params, headers=agent_auth(enrolled)
    )
    assert uploaded.status_code == 200, uploaded.text
    return {
        "agent": enrolled["agent_id"],
        "policy": policy,
        "group": group,
        "task": collect,
        "sample": uploaded.json()["id"],
        "detection": event["id"],
        "unit": tree["education"],
    }


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/policies/{policy}", None),
    ("PUT", "/api/v1/policies/{policy}", {"name": "Đổi", "settings": {}}),
    ("DELETE", "/api/v1/policies/{policy}", None),
    ("PUT", "/api/v1/units/{unit}/policy", {"policy_id": None}),
    ("PUT", "/api/v1/groups/{group}", {"name": "x", "unit_id": "{unit}", "policy_id": None}),
    ("DELETE", "/api/v1/groups/{group}", None),
    ("PUT", "/api/v1/agents/{agent}/group", {"group_id": None}),
    ("GET", "/api/v1/agents/{agent}/policy", None),
    ("POST", "/api/v1/tasks", {"kind": "scan", "agent_ids": ["{agent}"]}),
    ("POST", "/api/v1/tasks", {"kind": "scan", "unit_id": "{unit}"}),
    ("POST", "/api/v1/tasks", {"kind": "scan", "group_id": "{group}"}),
    ("POST", "/api/v1/tasks", {"kind": "restore", "agent_ids": ["{agent}"], "params": {"quarantine_id": ITEM}}),
    ("GET", "/api/v1/tasks/{task}", None),
    ("GET", "/api/v1/tasks/{task}/runs", None),
    ("POST", "/api/v1/tasks/{task}/cancel", None),
    ("GET", "/api/v1/tasks/{task}/samples", None),
    ("GET", "/api/v1/samples/{sample}/download", None),
]


def _fill(value: Any, objects: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value.count("{") == 1:
        return objects[value[1:-1]]
    if isinstance(value, str):
        return value.format(**objects)
    if isinstance(value, dict):
        return {k: _fill(v, objects) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, objects) for v in value]
    return value


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_a_unit_admin_never_reaches_another_units_objects(
    client: TestClient, education: dict[str, Any], method: str, path: str, body: Any
) -> None:
    csrf = login(client, "yte.admin")
    answer = client.request(method, _fill(path, education), json=_fill(body, education), headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 404, answer.text


def test_lists_show_nothing_of_another_unit(client: TestClient, education: dict[str, Any]) -> None:
    login(client, "yte.admin")
    for path in ("/api/v1/policies", "/api/v1/groups", "/api/v1/tasks", "/api/v1/quarantine"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert answer.json() == [], path
    answer = client.post(
        f"/api/v1/detections/{education['detection']}/allow",
        json={"reason": "thử"},
        headers={"X-CSRF-Token": login(client, "yte.admin")},
    )
    assert answer.status_code == 403  # fleet-wide: province administrators only
