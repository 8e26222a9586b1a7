"""The daemon under a policy and with tasks, against the real application in-process (SQLite and PostgreSQL).

An admin sets a policy and creates tasks through the REST API; the daemon receives them in heartbeats, runs the
tasks on its job queue (driven here with ``run_jobs``), and the server sees the results. Nothing here sleeps.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from garrison.agent.client import AgentClient
from garrison.agent.daemon import Daemon
from garrison.agent.identity import Identity
from garrison.agent.outbox import Outbox
from garrison.agent.settings import AgentSettings
from garrison.agent.tasks import STARTED, Ledger
from garrison.engine import Database, Engine
from garrison.engine.eicar import EICAR
from tests.agent.conftest import AppTransport, Clock, admin_get
from tests.server.conftest import login

EICAR_SHA256 = hashlib.sha256(EICAR).hexdigest()


class WallClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 9, 0).astimezone()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def wallclock() -> WallClock:
    return WallClock()


@pytest.fixture
def make_daemon(
    agent_settings: AgentSettings,
    identity: Identity,
    outbox: Outbox,
    transport: AppTransport,
    clock: Clock,
    wallclock: WallClock,
) -> Iterator[Any]:
    clients: list[AgentClient] = []

    def make() -> Daemon:
        agent_client = AgentClient.for_identity(identity, transport=transport)
        clients.append(agent_client)
        return Daemon(
            agent_settings,
            identity,
            outbox,
            agent_client,
            engine_loader=lambda s: (Engine(Database.empty()), None),
            clock=clock,
            wallclock=wallclock,
        )

    yield make
    for agent_client in clients:
        agent_client.close()


def _admin(client: TestClient, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    client.cookies.clear()
    csrf = login(client)
    answer = client.request(method, path, json=body, headers={"X-CSRF-Token": csrf})
    client.cookies.clear()
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else None


def _policy(client: TestClient, unit: int, **settings: Any) -> int:
    body = {"name": f"chính sách {len(settings)}", "owner_unit_id": unit, "settings": settings}
    policy_id = int(_admin(client, "POST", "/api/v1/policies", body, 201)["id"])
    _admin(client, "PUT", f"/api/v1/units/{unit}/policy", {"policy_id": policy_id}, 204)
    return policy_id


def _task(client: TestClient, identity: Identity, kind: str, **params: Any) -> int:
    body = {"kind": kind, "agent_ids": [identity.agent_id], "params": params}
    return int(_admin(client, "POST", "/api/v1/tasks", body, 201)["id"])


def _run(client: TestClient, task_id: int) -> dict[str, Any]:
    [run] = admin_get(client, f"/api/v1/tasks/{task_id}/runs")
    return dict(run)


def _cycle(daemon: Daemon, clock: Clock) -> None:
    """One heartbeat (policy and tasks come with it), the jobs it brought, and the results sent."""
    clock.now += 3600
    daemon.step()
    daemon.run_jobs()
    daemon.step()


def test_the_policy_reaches_the_agent_and_survives_a_restart(
    make_daemon: Any, client: TestClient, tree: dict[str, int], identity: Identity, clock: Clock, tmp_path: Path
) -> None:
    watched = tmp_path / "tải về"
    watched.mkdir()
    _policy(
        client,
        tree["province"],
        action="quarantine",
        scan_paths=[str(watched)],
        exclude=["*.iso"],
        realtime_paths=[str(watched)],
        realtime_action="delete",
        limits={"max_file_mb": 5},
    )
    daemon = make_daemon()
    assert daemon.settings.scan_action == "report"  # local settings until the server says otherwise
    daemon.step()
    assert daemon.settings.scan_action == "quarantine"
    assert daemon.settings.watch_paths == [str(watched)]
    assert daemon.settings.exclude == ["*.iso"]
    assert daemon.settings.realtime_paths == [str(watched)]
    assert daemon.settings.realtime_action == "delete"
    assert daemon.engine.limits.max_file_size == 5 * 1024 * 1024
    revision = admin_get(client, f"/api/v1/agents/{identity.agent_id}/policy")["revision"]
    assert daemon.policy_store.revision == revision

    clock.now += 3600
    daemon.step()  # the next heartbeat says which policy the agent applies
    seen = admin_get(client, f"/api/v1/agents/{identity.agent_id}")
    assert seen["inventory"]["policy_revision"] == revision

    restarted = make_daemon()  # the server is not asked: the saved policy applies at once
    assert restarted.settings.scan_action == "quarantine"
    assert restarted.policy_store.revision == revision


def test_a_scan_task_quarantines_and_a_restore_task_gives_the_file_back(
    make_daemon: Any, client: TestClient, tree: dict[str, int], identity: Identity, clock: Clock, tmp_path: Path
) -> None:
    folder = tmp_path / "hộp thư"
    folder.mkdir()
    sample = folder / "hoá đơn.com"
    sample.write_bytes(EICAR)
    sample.chmod(0o640)
    _policy(client, tree["province"], action="quarantine", realtime_enabled=False)
    daemon = make_daemon()
    daemon.step()  # policy

    scan = _task(client, identity, "scan", paths=[str(folder)])
    _cycle(daemon, clock)
    assert not sample.exists()
    run = _run(client, scan)
    assert run["state"] == "done", run
    assert run["result"]["files"] == 1 and run["result"]["infected"] == 1
    [item] = admin_get(client, "/api/v1/quarantine")
    assert item["state"] == "quarantined"
    assert item["path"] == str(sample)
    [detection] = admin_get(client, "/api/v1/detections")
    assert detection["action"] == "quarantine" and detection["action_ok"] is True

    restore = _task(client, identity, "restore", quarantine_id=item["item_id"])
    _cycle(daemon, clock)
    assert _run(client, restore)["state"] == "done"
    assert sample.read_bytes() == EICAR
    assert sample.stat().st_mode & 0o777 == 0o640
    assert admin_get(client, "/api/v1/quarantine")[0]["state"] == "restored"
    # A person decided this file is safe here: scans on this computer leave it alone from now on.
    assert daemon.scan([str(folder)]).infected == 0
    assert make_daemon().scan([str(folder)]).infected == 0


def test_delete_and_collect_tasks(
    make_daemon: Any, client: TestClient, tree: dict[str, int], identity: Identity, clock: Clock, tmp_path: Path
) -> None:
    folder = tmp_path / "scan"
    folder.mkdir()
    (folder / "a.com").write_bytes(EICAR)
    suspicious = tmp_path / "lạ.bin"
    suspicious.write_bytes(b"\x7fELF suspicious " * 50)
    _policy(client, tree["province"], action="quarantine", realtime_enabled=False)
    daemon = make_daemon()
    daemon.step()
    daemon.scan([str(folder)])
    daemon.step()
    [item] = admin_get(client, "/api/v1/quarantine")

    collect_quarantined = _task(client, identity, "collect", quarantine_id=item["item_id"])
    collect_path = _task(client, identity, "collect", path=str(suspicious))
    _cycle(daemon, clock)
    for task_id, expected in ((collect_quarantined, EICAR), (collect_path, suspicious.read_bytes())):
        assert _run(client, task_id)["state"] == "done"
        [sample] = admin_get(client, f"/api/v1/tasks/{task_id}/samples")
        assert sample["sha256"] == hashlib.sha256(expected).hexdigest()

    delete = _task(client, identity, "delete", quarantine_id=item["item_id"])
    missing = _task(client, identity, "collect", path=str(tmp_path / "không có"))
    _cycle(daemon, clock)
    assert _run(client, delete)["state"] == "done"
    assert admin_get(client, "/api/v1/quarantine")[0]["state"] == "deleted"
    assert daemon.quarantine_store().list() == []
    failed = _run(client, missing)
    assert failed["state"] == "failed"
    assert "cannot read" in failed["message"]


def test_a_task_runs_once_and_an_interrupted_one_is_reported(
    make_daemon: Any,
    client: TestClient,
    identity: Identity,
    clock: Clock,
    agent_settings: AgentSettings,
    outbox: Outbox,
) -> None:
    task_id = _task(client, identity, "update")
    daemon = make_daemon()
    daemon.step()
    clock.now += 3600
    daemon.step()  # handed out again (no answer yet): not queued twice
    assert daemon.run_jobs() == 1
    daemon.step()
    run = _run(client, task_id)
    assert run["state"] == "done"
    assert "signature_version" in run["result"]

    # A task the agent was killed in the middle of is not run again, and the server is told.
    second = _task(client, identity, "scan", paths=["/nonexistent"])
    Ledger(agent_settings.tasks_path).mark(second, STARTED)
    restarted = make_daemon()
    restarted.tasks.recover()
    clock.now += 3600
    restarted.step()
    assert restarted.run_jobs() == 0
    restarted.step()
    run = _run(client, second)
    assert run["state"] == "failed"
    assert "stopped while running" in run["message"]
    assert json.loads(agent_settings.tasks_path.read_text())[str(second)] == "finished"
    assert len(outbox) == 0


def test_an_allowed_file_is_not_a_detection(make_daemon: Any, client: TestClient, clock: Clock, tmp_path: Path) -> None:
    folder = tmp_path / "kế toán"
    folder.mkdir()
    (folder / "phần mềm.exe").write_bytes(EICAR)
    daemon = make_daemon()
    assert daemon.scan([str(folder)]).infected == 1
    _admin(client, "POST", "/api/v1/allowlist", {"sha256": EICAR_SHA256, "reason": "thử nghiệm"}, 201)
    clock.now += 3600
    daemon.step()
    assert EICAR_SHA256 in daemon.allowed
    assert daemon.scan([str(folder)]).infected == 0


def test_scheduled_scans_run_on_time_and_missed_runs_are_made_up(
    make_daemon: Any,
    client: TestClient,
    tree: dict[str, int],
    clock: Clock,
    wallclock: WallClock,
    tmp_path: Path,
    agent_settings: AgentSettings,
) -> None:
    folder = tmp_path / "lịch"
    folder.mkdir()
    (folder / "x.com").write_bytes(EICAR)
    schedule = {"cron": "30 12 * * *", "paths": [str(folder)], "random_delay_minutes": 0}
    _policy(client, tree["province"], schedules=[schedule], realtime_enabled=False)
    daemon = make_daemon()
    daemon.step()
    wait = daemon.step()
    assert wait <= 3.5 * 3600  # wakes up for the scan at 12:30, before the next heartbeat would
    assert daemon.run_jobs() == 0
    wallclock.now = wallclock.now.replace(hour=12, minute=30)
    daemon.step()
    assert daemon.run_jobs() == 1
    daemon.step()
    assert len(admin_get(client, "/api/v1/detections")) == 1

    # The computer is off at the next 12:30; when the agent starts again, the missed scan runs once.
    wallclock.now += timedelta(days=2)
    restarted = make_daemon()
    restarted.step()
    assert restarted.run_jobs() == 1
    restarted.step()
    assert restarted.run_jobs() == 0
    assert len(admin_get(client, "/api/v1/detections")) == 2
    assert agent_settings.schedule_path.exists()


def test_random_delays_spread_the_start(agent_settings: AgentSettings) -> None:
    from garrison.agent.schedule import Scheduler
    from garrison.protocol.policy import ScheduledScan

    now = datetime(2026, 11, 25, 9, 0).astimezone()
    schedule = ScheduledScan(cron="0 12 * * *", random_delay_minutes=60)
    starts = [Scheduler(agent_settings.state_dir / f"s{i}.json").plan_next(schedule, now) for i in range(50)]
    noon = now.replace(hour=12, minute=0)
    assert all(noon <= start <= noon + timedelta(minutes=60) for start in starts)
    assert max(starts) - min(starts) > timedelta(minutes=20)


def test_a_policy_enforces_only_what_it_sets(
    make_daemon: Any, client: TestClient, tree: dict[str, int], agent_settings: AgentSettings, tmp_path: Path
) -> None:
    local = agent_settings.model_copy(update={"realtime_paths": [str(tmp_path)], "watch_paths": ["/srv"]})
    _policy(client, tree["province"], action="delete")
    daemon = make_daemon()
    daemon.base_settings = local
    daemon.step()
    assert daemon.settings.scan_action == "delete"
    assert daemon.settings.realtime_paths == [str(tmp_path)]  # the computer's own, untouched
    assert daemon.settings.watch_paths == ["/srv"]
    assert daemon.policy_store.document is not None
    assert daemon.policy_store.document.enforced == ["action"]
