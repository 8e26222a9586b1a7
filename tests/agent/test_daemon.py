"""The daemon with the real client against the real application, in-process, on SQLite and PostgreSQL.

Requests go through an httpx2 transport into the application (Starlette's test client runs it), so the server's
database can be checked directly. Time is a fake clock: nothing here sleeps.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient

from garrison.agent import inventory
from garrison.agent.client import EnrollAgain
from garrison.agent.daemon import Daemon, ScanSummary, scan_paths
from garrison.agent.identity import Identity
from garrison.agent.outbox import Outbox
from garrison.agent.settings import AgentSettings
from garrison.engine import Database, Engine
from garrison.engine.eicar import EICAR
from tests.agent.conftest import AppTransport, Clock, admin_get
from tests.conftest import zip_bytes
from tests.server.conftest import login


def _samples(folder: Path) -> Path:
    folder.mkdir()
    (folder / "eicar.com").write_bytes(EICAR)
    (folder / "hoá đơn.zip").write_bytes(zip_bytes({"tài liệu/eicar.com": EICAR}))
    (folder / "clean.txt").write_text("không có gì")
    return folder


def _scan(daemon: Daemon, folder: Path) -> ScanSummary:
    return daemon.scan([str(folder)])


def test_heartbeat_reports_the_inventory(daemon: Daemon, client: TestClient, identity: Identity) -> None:
    wait = daemon.step()
    assert 54 <= wait <= 66  # the server's interval, jitter included
    agent = admin_get(client, f"/api/v1/agents/{identity.agent_id}")
    assert agent["state"] == "online"
    reported = agent["inventory"]
    assert reported["hostname"] and reported["os"] and reported["agent_version"]
    assert reported["realtime_enabled"] is False and reported["events_dropped"] == 0
    assert daemon.step() == pytest.approx(wait)  # nothing due yet: no second heartbeat


def test_detections_reach_the_server_once(
    daemon: Daemon, client: TestClient, outbox: Outbox, tmp_path: Path, identity: Identity
) -> None:
    summary = _scan(daemon, _samples(tmp_path / "scan"))
    assert summary.files == 3 and summary.infected == 2 and len(summary.detections) == 2
    assert len(outbox) == 2
    daemon.step()
    assert len(outbox) == 0
    found = admin_get(client, "/api/v1/detections")
    assert sorted(Path(d["path"]).name for d in found) == ["eicar.com", "hoá đơn.zip"]
    inner = next(d for d in found if d["path"].endswith(".zip"))
    assert inner["chain"][-1] == "tài liệu/eicar.com" and inner["md5"] == "44d88612fea8a8f36de82e1278abb02f"
    assert all(d["agent_id"] == identity.agent_id and d["action"] == "report" for d in found)
    agent = admin_get(client, f"/api/v1/agents/{identity.agent_id}")
    assert agent["inventory"]["last_scan_at"] is not None


def test_a_lost_answer_means_a_resend_that_changes_nothing(
    daemon: Daemon, client: TestClient, outbox: Outbox, transport: AppTransport, tmp_path: Path, clock: Clock
) -> None:
    daemon.step()  # heartbeat done; only events from now on

    def lose_answer(request: httpx2.Request) -> httpx2.Response | None:
        if request.url.path.endswith("/events"):
            transport.client.send(request).read()  # the server stores the batch...
            raise httpx2.ReadError("connection reset by peer", request=request)  # ...the answer is lost
        return None

    transport.fail = lose_answer
    _scan(daemon, _samples(tmp_path / "scan"))
    wait = daemon.step()
    assert 0 <= wait <= 2.0  # first failure: full jitter up to the base
    assert len(outbox) == 2  # not acknowledged, so still queued
    assert len(admin_get(client, "/api/v1/detections")) == 2  # but stored
    transport.fail = None
    clock.now += wait
    daemon.step()
    assert len(outbox) == 0
    assert len(admin_get(client, "/api/v1/detections")) == 2


def test_server_away_backs_off_with_jitter_and_comes_back(
    daemon: Daemon, client: TestClient, outbox: Outbox, transport: AppTransport, tmp_path: Path, clock: Clock
) -> None:
    def away(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)

    transport.fail = away
    _scan(daemon, _samples(tmp_path / "scan"))
    waits = []
    for _ in range(12):
        waits.append(daemon.step())
        calls = len(transport.seen)
        assert daemon.step() == pytest.approx(waits[-1])  # still waiting: no request before the backoff is over
        assert len(transport.seen) == calls
        clock.now += waits[-1]
    bounds = [min(60.0, 2.0 * 2**n) for n in range(12)]
    assert all(0 <= w <= b for w, b in zip(waits, bounds, strict=True))
    assert max(waits[6:]) > 10  # grew towards the cap
    transport.fail = None
    clock.now += 120
    daemon.step()
    assert len(outbox) == 0 and len(admin_get(client, "/api/v1/detections")) == 2
    assert daemon.last_error is None


def test_retry_after_is_honoured(daemon: Daemon, transport: AppTransport, clock: Clock) -> None:
    busy = {"left": 1}

    def shed(request: httpx2.Request) -> httpx2.Response | None:
        if busy["left"]:
            busy["left"] -= 1
            return httpx2.Response(
                429, json={"error": "too_many_requests", "message": "busy"}, headers={"Retry-After": "42"}
            )
        return None

    transport.fail = shed
    assert daemon.step() == 42.0
    clock.now += 41
    before = len(transport.seen)
    assert daemon.step() == pytest.approx(1.0)
    assert len(transport.seen) == before  # not a request earlier than the server asked
    clock.now += 1
    assert daemon.step() > 50  # heartbeat went through; next one at the server's interval


def test_revoked_agent_must_enroll_again(daemon: Daemon, client: TestClient, identity: Identity) -> None:
    daemon.step()
    csrf = login(client)
    answer = client.post(f"/api/v1/agents/{identity.agent_id}/revoke", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200, answer.text
    client.cookies.clear()
    daemon._next_heartbeat = 0  # due now
    with pytest.raises(EnrollAgain, match="enroll again"):
        daemon.step()


def test_unsendable_events_do_not_block_the_queue(
    daemon: Daemon, client: TestClient, outbox: Outbox, tmp_path: Path
) -> None:
    outbox.put("quarantine-done", {"what": "a kind this server does not know yet"})
    outbox.put("detection", {"path": "/x", "name": "N", "kind": "builtin", "md5": "not-a-md5", "occurred_at": "x"})
    _scan(daemon, _samples(tmp_path / "scan"))
    daemon.step()
    assert len(outbox) == 0 and daemon.discarded == 2
    assert len(admin_get(client, "/api/v1/detections")) == 2
    daemon._next_heartbeat = 0
    daemon.step()  # the next heartbeat says so
    agent = admin_get(client, f"/api/v1/agents/{daemon.identity.agent_id}")
    assert any("dropped 2" in error for error in agent["inventory"]["errors"])


def test_events_the_server_rejects_are_dropped_not_retried_forever(
    daemon: Daemon, client: TestClient, outbox: Outbox, transport: AppTransport
) -> None:
    good = {"path": "/a", "name": "Eicar-Test-Signature", "kind": "builtin", "occurred_at": "2026-11-25T08:00:00Z"}
    outbox.put("detection", good)
    outbox.put("detection", {**good, "path": "/b" * 5000})  # longer than the server takes: 422 for this one
    daemon.step()
    assert len(outbox) == 0
    stored = admin_get(client, "/api/v1/detections")
    assert [d["path"] for d in stored] == ["/a"]


def test_run_until_stopped_without_sleeping(daemon: Daemon, transport: AppTransport, clock: Clock) -> None:
    stop = threading.Event()
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds
        if len(waits) == 3:
            stop.set()

    daemon.run(stop, wait=wait)
    assert len(waits) == 3 and all(50 < w < 70 for w in waits)
    assert transport.seen.count("/api/v1/agent/heartbeat") == 3


def test_scan_paths_counts_and_queues(tmp_path: Path, outbox: Outbox) -> None:
    folder = _samples(tmp_path / "scan")
    (folder / "excluded.com").write_bytes(EICAR)
    summary = scan_paths(
        Engine(Database.empty()), [str(folder), str(tmp_path / "missing")], outbox, exclude=["excluded.*"]
    )
    assert (summary.files, summary.infected, summary.errors, summary.skipped) == (3, 2, 1, 2)
    events = outbox.batch()
    assert [e.kind for e in events] == ["detection", "detection"]
    assert all(uuid.UUID(str(e.id)) for e in events)
    assert {e.payload["name"] for e in events} == {"Eicar-Test-Signature"}
    assert {Path(e.payload["path"]).name for e in events} == {"eicar.com", "hoá đơn.zip"}


def test_status_survives_processes(agent_settings: AgentSettings, outbox: Outbox, tmp_path: Path) -> None:
    assert inventory.load_status(agent_settings.status_path).last_scan_at is None
    daemon = Daemon(
        agent_settings,
        None,  # type: ignore[arg-type]
        outbox,
        None,  # type: ignore[arg-type]
        engine_loader=lambda s: (Engine(Database.empty()), None),
    )
    daemon.scan([str(_samples(tmp_path / "scan"))])
    saved = inventory.load_status(agent_settings.status_path)
    assert saved.last_scan_at is not None and saved.last_scan_detections == 2 and saved.last_scan_files == 3
