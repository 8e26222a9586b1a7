"""Console pages of tasks, quarantined files and collected samples, on SQLite and PostgreSQL: a task started from
the form reaches the agents through their heartbeats and their answers show as progress; the "not run yet" list;
CSV exports; restoring, deleting and collecting a quarantined file; sample downloads; auditors, unit admins, CSRF."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import py7zr
from fastapi.testclient import TestClient

from garrison.server.tasks.samples import ARCHIVE_PASSWORD
from tests.server.conftest import agent_auth, detection_event, enroll_agent, enrollment_token
from tests.server.console.test_views import console_login, csrf_of

TASK_URL = re.compile(r"/tasks/(\d+)\?done=created$")
RUN_ROW = re.compile(r'<tr id="run-([0-9a-f-]{36})">')


def _orders(client: TestClient, enrolled: dict[str, Any]) -> list[dict[str, Any]]:
    inventory = {"hostname": enrolled["hostname"], "os": "Linux"}
    answer = client.post("/api/v1/agent/heartbeat", json={"inventory": inventory}, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text
    orders: list[dict[str, Any]] = answer.json()["tasks"]
    return orders


def _enroll(client: TestClient, unit: int, hostname: str) -> dict[str, Any]:
    enrolled = enroll_agent(client, enrollment_token(client, unit), hostname)
    return {**enrolled, "hostname": hostname}


def _answer(client: TestClient, enrolled: dict[str, Any], task_id: int, status: str, **extra: Any) -> None:
    result = {
        "id": str(uuid.uuid4()),
        "task_id": task_id,
        "occurred_at": datetime.now(UTC).isoformat(),
        "status": status,
        **extra,
    }
    _report(client, enrolled, task_results=[result])


def _report(client: TestClient, enrolled: dict[str, Any], **batch: Any) -> None:
    answer = client.post("/api/v1/agent/events", json=batch, headers=agent_auth(enrolled))
    assert answer.status_code == 200, answer.text


def _login(client: TestClient, username: str = "admin", language: str = "en") -> None:
    client.cookies.clear()
    assert console_login(client, username).status_code == 303
    client.cookies.set("garrison_lang", language)


def _created(answer: Any) -> int:
    assert answer.status_code == 303, answer.text
    found = TASK_URL.search(answer.headers["location"])
    assert found, answer.headers["location"]
    return int(found[1])


def _csv(answer: Any) -> list[list[str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))


def _quarantined(client: TestClient, enrolled: dict[str, Any], path: str) -> tuple[str, str]:
    """A detection event that says the agent quarantined ``path``: (detection id, quarantine id)."""
    item = uuid.uuid4().hex
    event = detection_event(path=path, chain=[], sha256="c" * 64, quarantine_id=item, action_ok=True)
    _report(client, enrolled, detections=[event])
    return event["id"], item


def test_a_scan_task_from_the_form_shows_its_progress_and_who_has_not_run_it(
    client: TestClient, tree: dict[str, int]
) -> None:
    first = _enroll(client, tree["health"], "syt-ketoan")
    second = _enroll(client, tree["health"], "syt-vanthu")
    below = _enroll(client, tree["hospital"], "bv-tiepdon")
    outside = _enroll(client, tree["education"], "sgd-may")

    _login(client)
    form = client.get("/tasks/new")
    assert form.status_code == 200
    assert "Every computer of a unit, including the units below it" in form.text
    assert "until then" in form.text and 'value="72"' in form.text
    csrf = csrf_of(client, "/tasks/new")
    base = {"csrf_token": csrf, "kind": "scan", "target": "unit", "hours": "72"}
    missing = client.post("/tasks/new", data={**base, "unit_id": ""})
    assert missing.status_code == 400
    assert "Choose the computers" in missing.text
    empty = client.post("/tasks/new", data={**base, "kind": "collect", "unit_id": str(tree["health"])})
    assert empty.status_code == 400
    assert "Enter the full path of the file to collect" in empty.text
    assert 'value="collect" id="kind-collect" checked' in empty.text  # the form keeps what was chosen
    task_id = _created(
        client.post(
            "/tasks/new",
            data={**base, "unit_id": str(tree["health"]), "paths": "/home\n\n/srv ", "comment": "kiểm tra định kỳ"},
            follow_redirects=False,
        )
    )

    listed = client.get("/tasks").text
    row = listed[listed.index(f'id="task-{task_id}"') :].split("</tr>")[0]
    assert "Scan now" in row and "Unit Sở Y tế and the units below it" in row and "kiểm tra định kỳ" in row
    assert f'href="/tasks/{task_id}?state=waiting" title="Not run yet">3<' in row
    assert f'href="/tasks/{task_id}?state=done" title="Done" class="zero">0<' in row
    _login(client, language="vi")
    assert "Quét ngay" in client.get("/tasks").text

    client.cookies.clear()
    assert _orders(client, outside) == []
    [order] = _orders(client, first)
    assert order["id"] == task_id and order["params"] == {"paths": ["/home", "/srv"]}
    _answer(client, first, task_id, "done", message="xong", result={"files": 1200, "infected": 0})
    assert [o["id"] for o in _orders(client, second)] == [task_id]  # sent, no answer yet

    _login(client)
    page = client.get(f"/tasks/{task_id}").text
    done_row = page[page.index(f'id="run-{first["agent_id"]}"') :].split("</tr>")[0]
    assert "Done" in done_row and "1,200 files scanned, 0 infected" in done_row and "xong" in done_row
    assert set(RUN_ROW.findall(page)) == {first["agent_id"], second["agent_id"], below["agent_id"]}
    waiting = client.get(f"/tasks/{task_id}", params={"state": "waiting"}).text
    assert set(RUN_ROW.findall(waiting)) == {second["agent_id"], below["agent_id"]}
    assert set(RUN_ROW.findall(client.get(f"/tasks/{task_id}?state=done").text)) == {first["agent_id"]}
    listed = client.get("/tasks").text
    row = listed[listed.index(f'id="task-{task_id}"') :].split("</tr>")[0]
    assert f'href="/tasks/{task_id}?state=waiting" title="Not run yet">2<' in row
    assert f'href="/tasks/{task_id}?state=done" title="Done">1<' in row
    _login(client, language="vi")
    assert "Máy chưa thực hiện" in client.get(f"/tasks/{task_id}").text

    # The CSV exports hold the same rows as the pages.
    _login(client)
    base["csrf_token"] = csrf = csrf_of(client, "/tasks")
    runs = _csv(client.get(f"/tasks/{task_id}/runs.csv", params={"state": "waiting"}))
    assert runs[0][:3] == ["Computer", "Unit", "State"]
    assert {r[-1] for r in runs[1:]} == {second["agent_id"], below["agent_id"]}
    assert {r[0]: r[2] for r in runs[1:]} == {"syt-vanthu": "Sent, no answer yet", "bv-tiepdon": "Waiting to be sent"}
    everyone = _csv(client.get(f"/tasks/{task_id}/runs.csv"))
    assert [r[-1] for r in everyone[1:]] == RUN_ROW.findall(client.get(f"/tasks/{task_id}").text)
    assert "1,200 files scanned, 0 infected" in {r[6] for r in everyone[1:]}
    update_id = _created(
        client.post(
            "/tasks/new",
            data={**base, "kind": "update", "target": "agent", "agent_id": outside["agent_id"]},
            follow_redirects=False,
        )
    )
    tasks = _csv(client.get("/tasks.csv"))
    assert tasks[0][0] == "Task"
    assert [(r[0], r[-1]) for r in tasks[1:]] == [("Update now", str(update_id)), ("Scan now", str(task_id))]
    scan = tasks[2]
    assert scan[6:11] == ["1", "0", "0", "2", "3"]  # done, failed, running, not run yet, total
    only_updates = _csv(client.get("/tasks.csv", params={"kind": "update"}))
    assert [r[-1] for r in only_updates[1:]] == [str(update_id)]
    assert f'id="task-{task_id}"' not in client.get("/tasks", params={"kind": "update"}).text

    # Cancelling stops the delivery to the computers that have not received it.
    cancelled = client.post(f"/tasks/{task_id}/cancel", data={"csrf_token": csrf}, follow_redirects=False)
    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == f"/tasks/{task_id}?done=cancelled"
    client.cookies.clear()
    assert _orders(client, below) == []
    _login(client)
    page = client.get(f"/tasks/{task_id}?done=cancelled").text
    assert "The task was cancelled" in page and "Cancel the task" not in page


def test_quarantined_files_are_restored_and_collected_from_the_console(
    client: TestClient, tree: dict[str, int]
) -> None:
    enrolled = _enroll(client, tree["hospital"], "bv-ketoan")
    detection, item = _quarantined(client, enrolled, r"C:\Users\ke.toan\Downloads\hoadon.exe")
    _other_detection, other = _quarantined(client, enrolled, r"C:\Users\ke.toan\Downloads\lạ.exe")
    agent_id = enrolled["agent_id"]

    _login(client)
    page = client.get("/quarantine").text
    assert "hoadon.exe" in page and "bv-ketoan" in page and "Bệnh viện" in page
    assert f'href="/detections/{detection}"' in page and f'href="/agents/{agent_id}"' in page
    assert f'action="/quarantine/{agent_id}/{item}/restore"' in page
    assert "the same content and permissions" in page and "next time the computer contacts the server" in page
    assert "In quarantine" in page
    found = client.get(f"/detections/{detection}").text
    assert "In quarantine" in found and f'action="/quarantine/{agent_id}/{item}/delete"' in found
    section = client.get(f"/agents/{agent_id}/tasks-section", headers={"HX-Request": "true"})
    assert section.status_code == 200 and "<html" not in section.text
    assert "hoadon.exe" in section.text and f"/quarantine/{agent_id}/{other}/collect" in section.text
    assert "Scan now" in section.text and f"/tasks/new?kind=collect&amp;agent={agent_id}" in section.text
    assert "<html" in client.get(f"/agents/{agent_id}/tasks-section").text  # the link without htmx: a page
    assert f'hx-get="/agents/{agent_id}/tasks-section"' in client.get(f"/agents/{agent_id}").text
    rows = _csv(client.get("/quarantine.csv"))
    assert {r[-1] for r in rows[1:]} == {item, other}
    assert {r[2] for r in rows[1:]} == {r"C:\Users\ke.toan\Downloads\hoadon.exe", r"C:\Users\ke.toan\Downloads\lạ.exe"}

    csrf = csrf_of(client, "/quarantine")
    restore_id = _created(
        client.post(f"/quarantine/{agent_id}/{item}/restore", data={"csrf_token": csrf}, follow_redirects=False)
    )
    assert "Restore a file" in client.get(f"/tasks/{restore_id}").text
    by_htmx = client.post(
        f"/quarantine/{agent_id}/{other}/collect", data={"csrf_token": csrf}, headers={"HX-Request": "true"}
    )
    assert by_htmx.status_code == 200
    collect_id = _created_from(by_htmx.headers["HX-Redirect"])
    assert client.post(f"/quarantine/{agent_id}/{item}/burn", data={"csrf_token": csrf}).status_code == 404

    client.cookies.clear()
    orders = {o["id"]: o for o in _orders(client, enrolled)}
    assert orders[restore_id]["kind"] == "restore" and orders[restore_id]["params"] == {"quarantine_id": item}
    assert orders[collect_id]["params"] == {"quarantine_id": other}
    _answer(client, enrolled, restore_id, "done", message="đã khôi phục")
    data = b"MZ\x90\x00 not really a program " * 50
    digest = hashlib.sha256(data).hexdigest()
    uploaded = client.put(
        f"/api/v1/agent/tasks/{collect_id}/sample",
        content=data,
        params={"path": r"C:\Users\ke.toan\Downloads\lạ.exe", "sha256": digest},
        headers=agent_auth(enrolled),
    )
    assert uploaded.status_code == 200, uploaded.text
    _answer(client, enrolled, collect_id, "done", result={"sha256": digest})

    _login(client)
    assert "hoadon.exe" not in client.get("/quarantine").text  # no longer in quarantine
    restored = client.get("/quarantine", params={"state": "restored"}).text
    assert "hoadon.exe" in restored and "Restored" in restored and f"/quarantine/{agent_id}/{item}/" not in restored
    assert "Restored" in client.get(f"/detections/{detection}").text
    page = client.get(f"/tasks/{collect_id}").text
    assert '"infected"' in page or "“infected”" in page
    link = re.search(r'href="(/samples/(\d+)/download)"', page)
    assert link, page
    download = client.get(link[1])
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/x-7z-compressed"
    assert download.headers["content-disposition"].startswith("attachment;")
    with py7zr.SevenZipFile(io.BytesIO(download.content), password=ARCHIVE_PASSWORD) as archive:
        [name] = archive.getnames()
        assert name.startswith(digest)
    assert "sample.download" in client.get("/audit").text or "sample.download" in client.get("/audit.csv").text

    # Collecting by path, from the computer's page.
    csrf = csrf_of(client, "/tasks")
    form = client.get(f"/tasks/new?agent={agent_id}&kind=collect").text
    assert "bv-ketoan" in form and 'value="agent" id="target-agent" checked' in form
    path_id = _created(
        client.post(
            "/tasks/new",
            data={
                "csrf_token": csrf,
                "kind": "collect",
                "target": "agent",
                "agent_id": agent_id,
                "path": "/tmp/lạ.sh",
                "hours": "24",
            },
            follow_redirects=False,
        )
    )
    page = client.get(f"/tasks/{path_id}").text
    assert "/tmp/lạ.sh" in page and "No file received yet." in page


def _created_from(url: str) -> int:
    found = TASK_URL.search(url)
    assert found, url
    return int(found[1])


def test_auditors_read_and_unit_admins_stay_in_their_subtree(client: TestClient, tree: dict[str, int]) -> None:
    health = _enroll(client, tree["health"], "syt-may")
    education = _enroll(client, tree["education"], "sgd-may")
    _detection, item = _quarantined(client, health, "/home/a/x.exe")
    _detection, foreign = _quarantined(client, education, "/home/b/y.exe")
    _login(client)
    csrf = csrf_of(client, "/tasks/new")
    base = {"csrf_token": csrf, "kind": "scan", "hours": "72"}
    mine = _created(
        client.post(
            "/tasks/new", data={**base, "target": "unit", "unit_id": str(tree["health"])}, follow_redirects=False
        )
    )
    theirs = _created(
        client.post(
            "/tasks/new", data={**base, "target": "unit", "unit_id": str(tree["education"])}, follow_redirects=False
        )
    )

    _login(client, "yte.audit")
    listed = client.get("/tasks").text
    assert f'id="task-{mine}"' in listed and f'id="task-{theirs}"' not in listed
    assert "/tasks/new" not in listed
    page = client.get(f"/tasks/{mine}").text
    assert "Cancel the task" not in page
    quarantine = client.get("/quarantine").text
    assert "x.exe" in quarantine and "y.exe" not in quarantine and "/restore" not in quarantine
    section = client.get(f"/agents/{health['agent_id']}/tasks-section", headers={"HX-Request": "true"}).text
    assert "/restore" not in section and 'action="/tasks/new"' not in section
    assert client.get("/tasks/new").status_code == 403
    csrf = csrf_of(client, "/tasks")
    refused = client.post("/tasks/new", data={**base, "csrf_token": csrf, "target": "unit", "unit_id": "1"})
    assert refused.status_code == 403
    assert client.post(f"/tasks/{mine}/cancel", data={"csrf_token": csrf}).status_code == 403
    restore = client.post(f"/quarantine/{health['agent_id']}/{item}/restore", data={"csrf_token": csrf})
    assert restore.status_code == 403

    _login(client, "yte.admin")
    assert client.get(f"/tasks/{theirs}").status_code == 404
    assert client.get(f"/tasks/{theirs}/runs.csv").status_code == 404
    assert [r[-1] for r in _csv(client.get("/tasks.csv"))[1:]] == [str(mine)]
    assert client.get(f"/agents/{education['agent_id']}/tasks-section").status_code == 404
    assert "y.exe" not in client.get("/quarantine", params={"state": "all"}).text
    assert {r[-1] for r in _csv(client.get("/quarantine.csv"))[1:]} == {item}
    csrf = csrf_of(client, "/tasks")
    assert (
        client.post(f"/quarantine/{education['agent_id']}/{foreign}/delete", data={"csrf_token": csrf}).status_code
        == 404
    )
    assert client.post(f"/tasks/{theirs}/cancel", data={"csrf_token": csrf}).status_code == 404
    outside = client.post(
        "/tasks/new", data={**base, "csrf_token": csrf, "target": "unit", "unit_id": str(tree["education"])}
    )
    assert outside.status_code == 404
    # Without the CSRF token nothing is changed.
    assert client.post(f"/quarantine/{health['agent_id']}/{item}/delete").status_code == 403
    assert client.post(f"/tasks/{mine}/cancel", data={"csrf_token": "wrong"}).status_code == 403
    deleted = client.post(f"/quarantine/{health['agent_id']}/{item}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 200  # followed to the new task's page
    assert "Delete a quarantined file" in deleted.text
