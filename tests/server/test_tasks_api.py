"""Tasks through the API: created for a unit, a group or chosen computers; handed out in heartbeats until a final
answer or expiry; answers through the (idempotent) event batches; quarantined files; collected samples."""

from __future__ import annotations

import hashlib
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import py7zr
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from garrison.server.agents.models import Agent
from garrison.server.db import Database
from garrison.server.settings import ServerSettings
from garrison.server.tasks.models import Task
from garrison.server.tasks.samples import ARCHIVE_PASSWORD
from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token, login

INVENTORY = {"hostname": "may-tram-01", "os": "Linux"}


def _admin(client: TestClient, username: str = "admin") -> dict[str, str]:
    client.cookies.clear()
    return {"X-CSRF-Token": login(client, username)}


def _task(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    answer = client.post("/api/v1/tasks", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    task: dict[str, Any] = answer.json()
    return task


def _orders(client: TestClient, enrolled: dict[str, Any]) -> list[dict[str, Any]]:
    answer = client.post("/api/v1/agent/heartbeat", json={"inventory": INVENTORY}, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text
    orders: list[dict[str, Any]] = answer.json()["tasks"]
    return orders


def _result(task_id: int, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "task_id": task_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "status": status,
        **extra,
    }


def _report(client: TestClient, enrolled: dict[str, Any], **batch: Any) -> dict[str, Any]:
    answer = client.post("/api/v1/agent/events", json=batch, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text
    ack: dict[str, Any] = answer.json()
    return ack


def _runs(client: TestClient, task_id: int, *states: str) -> dict[str, str]:
    answer = client.get(f"/api/v1/tasks/{task_id}/runs", params={"state": list(states)})
    assert answer.status_code == 200, answer.text
    return {run["agent_id"]: run["state"] for run in answer.json()}


def test_a_scan_task_reaches_every_computer_once_and_says_who_has_not_run_it(
    client: TestClient, database: Database, tree: dict[str, int]
) -> None:
    token = enrollment_token(client, tree["health"])
    first = enroll_agent(client, token, "may-01")
    second = enroll_agent(client, token, "may-02")
    outside = enroll_agent(client, enrollment_token(client, tree["education"]), "may-giao-duc")

    headers = _admin(client, "yte.admin")
    task = _task(client, headers, kind="scan", unit_id=tree["health"], params={"paths": ["/home"]}, comment="kiểm tra")
    assert task["total"] == 2
    assert task["counts"] == {"queued": 2}
    client.cookies.clear()

    assert _orders(client, outside) == []
    [order] = _orders(client, first)
    assert order["id"] == task["id"]
    assert order["kind"] == "scan"
    assert order["params"] == {"paths": ["/home"]}
    # Sent again while unanswered (the agent remembers what it started), so a lost answer loses no task.
    assert [o["id"] for o in _orders(client, first)] == [task["id"]]

    running = _result(task["id"], "running")
    done = _result(task["id"], "done", message="đã quét 120 tệp", result={"files": 120, "infected": 0})
    ack = _report(client, first, task_results=[running, done])
    assert set(ack["accepted"]) == {running["id"], done["id"]}
    assert _report(client, first, task_results=[done, running])["accepted"]  # a retried batch changes nothing
    assert _orders(client, first) == []
    with database.session() as session:  # nothing left for it: heartbeats stop looking
        assert session.get(Agent, first["agent_id"]).open_tasks is False  # type: ignore[union-attr]
        assert session.get(Agent, second["agent_id"]).open_tasks is True  # type: ignore[union-attr]

    headers = _admin(client, "yte.admin")
    assert _runs(client, task["id"]) == {first["agent_id"]: "done", second["agent_id"]: "queued"}
    assert _runs(client, task["id"], "queued", "sent", "expired") == {second["agent_id"]: "queued"}
    seen = client.get(f"/api/v1/tasks/{task['id']}").json()
    assert seen["counts"] == {"done": 1, "queued": 1}
    assert seen["waiting"] == 1
    [run] = [r for r in client.get(f"/api/v1/tasks/{task['id']}/runs").json() if r["agent_id"] == first["agent_id"]]
    assert run["result"] == {"files": 120, "infected": 0}
    assert run["message"] == "đã quét 120 tệp"

    # Out of scope: another unit's computers, and answers about tasks that are not the agent's.
    refused = client.post("/api/v1/tasks", json={"kind": "scan", "unit_id": tree["education"]}, headers=headers)
    assert refused.status_code == 404
    refused = client.post("/api/v1/tasks", json={"kind": "scan", "agent_ids": [outside["agent_id"]]}, headers=headers)
    assert refused.status_code == 404
    client.cookies.clear()
    _report(client, outside, task_results=[_result(task["id"], "failed")])
    headers = _admin(client, "yte.audit")
    assert client.get(f"/api/v1/tasks/{task['id']}").json()["counts"] == {"done": 1, "queued": 1}
    assert (
        client.post("/api/v1/tasks", json={"kind": "update", "unit_id": tree["health"]}, headers=headers).status_code
        == 403
    )
    headers = _admin(client)
    assert any(e["action"] == "task.scan" for e in client.get("/api/v1/audit").json())


def test_a_task_expires_for_computers_that_stayed_off(
    client: TestClient, database: Database, tree: dict[str, int]
) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    headers = _admin(client)
    task = _task(client, headers, kind="update", agent_ids=[enrolled["agent_id"]], hours=1)
    with database.session() as session:
        session.execute(update(Task).values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    assert client.get(f"/api/v1/tasks/{task['id']}").json()["counts"] == {"expired": 1}
    client.cookies.clear()
    assert _orders(client, enrolled) == []
    _report(client, enrolled, task_results=[_result(task["id"], "done")])  # never handed out: it stays expired
    headers = _admin(client)
    assert _runs(client, task["id"]) == {enrolled["agent_id"]: "expired"}


def test_a_task_handed_out_in_time_may_answer_late(
    client: TestClient, database: Database, tree: dict[str, int]
) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    headers = _admin(client)
    task = _task(client, headers, kind="scan", agent_ids=[enrolled["agent_id"]], hours=1)
    client.cookies.clear()
    assert len(_orders(client, enrolled)) == 1  # a long scan starts...
    with database.session() as session:
        session.execute(update(Task).values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    headers = _admin(client)
    assert client.get(f"/api/v1/tasks/{task['id']}").json()["counts"] == {"expired": 1}
    client.cookies.clear()
    _report(client, enrolled, task_results=[_result(task["id"], "done")])  # ...and ends after the deadline
    headers = _admin(client)
    assert _runs(client, task["id"]) == {enrolled["agent_id"]: "done"}


def test_cancel_stops_delivery(client: TestClient, tree: dict[str, int]) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    headers = _admin(client)
    task = _task(client, headers, kind="scan", unit_id=tree["hospital"])
    cancelled = client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["counts"] == {"cancelled": 1}
    assert client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=headers).status_code == 409
    client.cookies.clear()
    assert _orders(client, enrolled) == []


def test_quarantined_files_are_restored_through_a_task(client: TestClient, tree: dict[str, int]) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    other = enroll_agent(client, enrollment_token(client, tree["hospital"]), "may-khac")
    item = "0123456789abcdef" * 2
    event = detection_event(chain=[], sha256="b" * 64, quarantine_id=item, action_ok=True)
    _report(client, enrolled, detections=[event])
    _report(client, enrolled, detections=[event])  # reported twice, kept once

    headers = _admin(client, "yte.admin")
    [listed] = client.get("/api/v1/quarantine").json()
    assert listed["item_id"] == item
    assert listed["state"] == "quarantined"
    assert listed["detection_id"] == event["id"]
    wrong = client.post(
        "/api/v1/tasks",
        json={"kind": "restore", "agent_ids": [other["agent_id"]], "params": {"quarantine_id": item}},
        headers=headers,
    )
    assert wrong.status_code == 404  # that computer does not hold this file
    bad = client.post(
        "/api/v1/tasks", json={"kind": "restore", "agent_ids": [enrolled["agent_id"]], "params": {}}, headers=headers
    )
    assert bad.status_code == 400
    assert "quarantine id" in bad.json()["message"]
    task = _task(client, headers, kind="restore", agent_ids=[enrolled["agent_id"]], params={"quarantine_id": item})
    client.cookies.clear()

    [order] = _orders(client, enrolled)
    assert order["params"] == {"quarantine_id": item}
    _report(client, enrolled, task_results=[_result(task["id"], "done", message="đã khôi phục")])
    headers = _admin(client, "yte.admin")
    [listed] = client.get("/api/v1/quarantine").json()
    assert listed["state"] == "restored"
    assert client.get("/api/v1/quarantine", params={"state": "quarantined"}).json() == []

    headers = _admin(client, "yte.audit")
    assert len(client.get("/api/v1/quarantine").json()) == 1


def test_a_collected_sample_is_kept_encrypted_and_handed_out_packed(
    client: TestClient, tree: dict[str, int], settings: ServerSettings, tmp_path: Path
) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    headers = _admin(client)
    task = _task(client, headers, kind="collect", agent_ids=[enrolled["agent_id"]], params={"path": "/tmp/lạ.exe"})
    scan = _task(client, headers, kind="scan", agent_ids=[enrolled["agent_id"]])
    client.cookies.clear()
    data = b"MZ\x90\x00 a suspicious program " * 100
    digest = hashlib.sha256(data).hexdigest()
    url = f"/api/v1/agent/tasks/{task['id']}/sample"

    def upload(body: bytes, sha: str, where: str = url) -> Any:
        return client.put(
            where, content=body, params={"path": "/tmp/lạ.exe", "sha256": sha}, headers=agent_auth(enrolled)
        )

    assert upload(data, "0" * 64).status_code == 400  # damaged on the way
    assert upload(data, digest, f"/api/v1/agent/tasks/{scan['id']}/sample").status_code == 400  # not a collect task
    assert client.put(url, content=data, params={"path": "x", "sha256": digest}).status_code == 401
    stored = upload(data, digest)
    assert stored.status_code == 200, stored.text
    assert upload(data, digest).json()["id"] == stored.json()["id"]  # a retried upload is the same sample

    blobs = list((settings.data_dir / "samples").iterdir())
    assert len(blobs) == 1
    assert b"suspicious program" not in blobs[0].read_bytes()  # encrypted at rest

    _report(client, enrolled, task_results=[_result(task["id"], "done", result={"sha256": digest})])
    headers = _admin(client, "yte.admin")
    [sample] = client.get(f"/api/v1/tasks/{task['id']}/samples").json()
    download = client.get(f"/api/v1/samples/{sample['id']}/download")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/x-7z-compressed"
    with pytest.raises(py7zr.exceptions.PasswordRequired):
        py7zr.SevenZipFile(io.BytesIO(download.content))  # even the names are hidden without the password
    with py7zr.SevenZipFile(io.BytesIO(download.content), password=ARCHIVE_PASSWORD) as archive:
        [name] = archive.getnames()
        archive.extractall(path=tmp_path)
    assert name.startswith(digest)
    assert (tmp_path / name).read_bytes() == data
    audit = {e["action"] for e in client.get("/api/v1/audit").json()}
    assert "sample.download" in audit

    headers = _admin(client, "yte.audit")
    assert client.get(f"/api/v1/samples/{sample['id']}/download").status_code == 200  # auditors may analyse


def test_samples_over_the_limit_are_refused(client: TestClient, tree: dict[str, int], settings: ServerSettings) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    headers = _admin(client)
    task = _task(client, headers, kind="collect", agent_ids=[enrolled["agent_id"]], params={"path": "/big"})
    client.cookies.clear()
    data = b"x" * (settings.sample_max_bytes + 1)
    answer = client.put(
        f"/api/v1/agent/tasks/{task['id']}/sample",
        content=data,
        params={"path": "/big", "sha256": hashlib.sha256(data).hexdigest()},
        headers=agent_auth(enrolled),
    )
    assert answer.status_code == 400
    assert "larger than" in answer.json()["message"]
    assert not (settings.data_dir / "samples").exists()


def test_task_parameters_are_checked(client: TestClient, tree: dict[str, int]) -> None:
    enroll_agent(client, enrollment_token(client, tree["hospital"]))  # so that only the parameters are wrong
    headers = _admin(client)
    cases = [
        ({"kind": "scan", "unit_id": tree["hospital"], "params": {"paths": "/"}}, "list of paths"),
        ({"kind": "collect", "unit_id": tree["hospital"], "params": {}}, "path on the computer"),
        ({"kind": "scan", "unit_id": tree["education"]}, "no enrolled computer"),
        ({"kind": "scan"}, "say which computers"),
        ({"kind": "scan", "unit_id": tree["hospital"], "hours": 0}, "hours"),
    ]
    for body, reason in cases:
        answer = client.post("/api/v1/tasks", json=body, headers=headers)
        assert answer.status_code in (400, 422), answer.text
        assert reason in answer.text, (body, answer.text)
