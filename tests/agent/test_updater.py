"""Signature updates from the agent's side, against the real application in-process (SQLite and PostgreSQL):
releases arrive through python-tuf's client, by delta when there is one; every attack and fault leaves the agent
with its last good release, reported to the server, and backed off."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from garrison.agent import software
from garrison.agent.client import AgentClient
from garrison.agent.daemon import Daemon, load_engine
from garrison.agent.identity import Identity
from garrison.agent.outbox import Outbox
from garrison.agent.settings import AgentSettings
from garrison.agent.updater import SignatureUpdater, UpdateFailed
from garrison.engine import Status
from garrison.engine.signatures import bundle
from garrison.protocol.updates import TargetInfo, UpdateOrder, full_target
from garrison.server.agents.models import Agent
from garrison.server.audit.service import SYSTEM
from garrison.server.db import Database
from garrison.server.updates import releases, rollout
from garrison.server.updates.models import TufMetadata, UpdateTarget
from garrison.server.updates.repository import UpdateRepository
from tests.agent.conftest import AppTransport, Clock, admin_get
from tests.agent.test_policy_tasks import _run, _task
from tests.agent.test_software import repository_wheel

SAMPLES = [f"mẫu thử số {i}\n".encode() * (i + 1) for i in range(4)]


def _line(sample: bytes, name: str) -> str:
    return f"{hashlib.md5(sample).hexdigest()}:{len(sample)}:{name}\n"


#: Signatures of files nobody has, so that a release is large enough for a delta to be worth it.
FILLER = "".join(_line(f"không có tệp này {i}".encode(), f"Garrison.Test.Filler{i}") for i in range(300))


def _content(*indexes: int) -> dict[str, bytes]:
    lines = "".join(_line(SAMPLES[i], f"Garrison.Test.Sample{i}") for i in indexes)
    return {"province-test.hdb": (FILLER + lines).encode()}


class WallClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def repo(client: TestClient) -> UpdateRepository:
    repository: UpdateRepository = client.app.state.update_repository  # type: ignore[attr-defined]
    # Publishing in a test also forgets the application's cached offer (a server notices after a few seconds).
    repository.forget_offers = client.app.state.offers.clear  # type: ignore[attr-defined]
    return repository


def _publish(database: Database, repo: UpdateRepository, content: dict[str, bytes], **kw: Any) -> int:
    with database.session() as session:
        release = releases.publish(session, repo, content, actor=SYSTEM, reason="test", **kw)
        session.commit()
        assert release is not None
    repo.forget_offers()  # type: ignore[attr-defined]
    return release.number


@pytest.fixture
def wallclock() -> WallClock:
    return WallClock()


@pytest.fixture
def agent(
    agent_settings: AgentSettings,
    identity: Identity,
    outbox: Outbox,
    transport: AppTransport,
    clock: Clock,
    wallclock: WallClock,
) -> Iterator[Daemon]:
    agent_client = AgentClient.for_identity(identity, transport=transport)
    with agent_client:
        daemon = Daemon(agent_settings, identity, outbox, agent_client, clock=clock)
        daemon._updater = SignatureUpdater(daemon.settings, agent_client, running_version="test", clock=wallclock)
        yield daemon


def _cycle(daemon: Daemon, clock: Clock) -> None:
    """A heartbeat (which names the release), the update job it queued, and the next heartbeat reporting it."""
    clock.now += 3600
    daemon.step()
    daemon.run_jobs()
    clock.now += 3600
    daemon.step()


def _detects(daemon: Daemon, index: int, tmp_path: Path) -> bool:
    path = tmp_path / f"sample{index}.txt"
    path.write_bytes(SAMPLES[index])
    result = daemon.engine.scan_file(path)
    return result.status is Status.INFECTED


def _server_view(client: TestClient, identity: Identity) -> dict[str, Any]:
    return dict(admin_get(client, f"/api/v1/agents/{identity.agent_id}"))


def _agent_row(database: Database, identity: Identity) -> Agent:
    with database.session() as session:
        row = session.get(Agent, identity.agent_id)
        assert row is not None
        session.expunge(row)
        return row


def test_a_release_arrives_in_full_then_by_delta_and_is_used(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, transport: AppTransport, tmp_path: Path
) -> None:
    assert not _detects(agent, 0, tmp_path)
    _publish(database, repo, _content(0))
    _cycle(agent, clock)
    assert agent.updater.status().release == 1
    assert _detects(agent, 0, tmp_path)
    assert any(path.endswith(".1.tar.gz") for path in transport.seen)

    transport.seen.clear()
    _publish(database, repo, _content(0, 1))
    _cycle(agent, clock)
    assert agent.updater.status().release == 2
    assert _detects(agent, 1, tmp_path)
    assert any(path.endswith(".1-to-2.delta") for path in transport.seen)
    assert not any(path.endswith(".2.tar.gz") for path in transport.seen)

    row = _agent_row(database, identity=agent.identity)
    assert row.signature_release == 2
    assert row.update_error == ""
    assert row.signature_date is not None  # the release's publication: what "older than 7 days" counts


def test_the_last_good_release_survives_a_restart_and_a_broken_install(
    agent: Daemon,
    database: Database,
    repo: UpdateRepository,
    clock: Clock,
    agent_settings: AgentSettings,
    tmp_path: Path,
) -> None:
    _publish(database, repo, _content(0))
    _cycle(agent, clock)
    _publish(database, repo, _content(0, 1))
    _cycle(agent, clock)
    # The current release's files are damaged on disk: the engine falls back to the last good one and says so.
    current = agent_settings.updates_dir / "releases" / "2"
    (current / "province-test.hdb").write_text("not a signature\n")
    engine, problem = load_engine(agent_settings)
    assert problem is not None and "release 2" in problem
    assert engine.database.report.signatures == 301  # release 1: the filler and sample 0


def _fail_updates(transport: AppTransport, answer: Any) -> None:
    def fail(request: httpx2.Request) -> httpx2.Response | None:
        if "/api/v1/updates/" in request.url.path:
            return answer(request)
        return None

    transport.fail = fail


def _assert_protected_and_reported(agent: Daemon, database: Database, clock: Clock, tmp_path: Path, words: str) -> None:
    status = agent.updater.status()
    assert status.release == 1, "the last good release stays installed"
    assert words in status.last_error, status.last_error
    assert _detects(agent, 0, tmp_path)
    clock.now += 3600
    agent.step()  # the heartbeat reports it
    row = _agent_row(database, agent.identity)
    assert row.signature_release == 1
    assert words in row.update_error


def _installed_one_then_offer_two(agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock) -> None:
    _publish(database, repo, _content(0))
    _cycle(agent, clock)
    assert agent.updater.status().release == 1
    _publish(database, repo, _content(0, 1))


def test_the_server_unreachable(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, transport: AppTransport, tmp_path: Path
) -> None:
    _installed_one_then_offer_two(agent, database, repo, clock)

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    _fail_updates(transport, refuse)
    _cycle(agent, clock)
    transport.fail = None
    _assert_protected_and_reported(agent, database, clock, tmp_path, "download failed")


def test_expired_metadata_is_refused(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, tmp_path: Path
) -> None:
    """A server (or a mirror) that stopped re-signing: the timestamp it serves has expired (a freeze)."""
    _installed_one_then_offer_two(agent, database, repo, clock)
    with database.session() as session:
        repo.publish(session, datetime.now(UTC) - timedelta(days=30))
        session.commit()
    _cycle(agent, clock)
    _assert_protected_and_reported(agent, database, clock, tmp_path, "expired")


def test_older_metadata_is_refused(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, tmp_path: Path
) -> None:
    """A rollback attack: the server offers a timestamp older than the one the agent already trusts."""
    _installed_one_then_offer_two(agent, database, repo, clock)
    with database.session() as session:
        newest = session.scalars(
            select(TufMetadata).where(TufMetadata.role == "timestamp").order_by(TufMetadata.version.desc())
        ).all()
        trusted = json.loads((agent.updater.metadata_dir / "timestamp.json").read_bytes())["signed"]["version"]
        session.execute(delete(TufMetadata).where(TufMetadata.role == "timestamp", TufMetadata.version >= trusted))
        assert newest[0].version > trusted
        session.commit()
    _cycle(agent, clock)
    _assert_protected_and_reported(agent, database, clock, tmp_path, "older update metadata")


def test_badly_signed_metadata_is_refused(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, transport: AppTransport, tmp_path: Path
) -> None:
    _installed_one_then_offer_two(agent, database, repo, clock)

    def tamper(request: httpx2.Request) -> httpx2.Response | None:
        if not request.url.path.endswith("timestamp.json"):
            return None
        answer = transport.client.send(request)
        document = json.loads(answer.read())
        document["signed"]["expires"] = "2099-01-01T00:00:00Z"  # a change the signature does not cover
        return httpx2.Response(200, content=json.dumps(document).encode())

    _fail_updates(transport, tamper)
    _cycle(agent, clock)
    transport.fail = None
    _assert_protected_and_reported(agent, database, clock, tmp_path, "not signed by the trusted keys")


def test_a_tampered_download_is_refused(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, tmp_path: Path, settings: Any
) -> None:
    _installed_one_then_offer_two(agent, database, repo, clock)
    # Someone with access to the server's disk (or a mirror) replaced the files; the signed hashes still say what
    # they should be.
    for stored in repo.targets_dir.iterdir():
        data = stored.read_bytes()
        stored.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    _cycle(agent, clock)
    _assert_protected_and_reported(agent, database, clock, tmp_path, "does not match its signed length or hash")


def test_a_release_that_does_not_compile_is_not_installed(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, tmp_path: Path
) -> None:
    """Signed correctly but broken (a server bug, or a stolen targets key): the agent compiles before swapping."""
    _publish(database, repo, _content(0))
    _cycle(agent, clock)
    files = {"province-test.ndb": b"Broken.Sig:0:*:zz-not-hex\n"}
    data = bundle.compress(bundle.pack(files))
    info = TargetInfo(
        kind="signatures", release=2, content_sha256=bundle.digest(files), content_size=len(bundle.pack(files))
    )
    with database.session() as session:
        repo.put_target(session, full_target(2), "signatures", data, info.model_dump(mode="json"))
        repo.publish(session)
        session.commit()
    with pytest.raises(UpdateFailed, match="does not compile"):
        agent.updater.check(UpdateOrder(release=2))
    assert agent.updater.status().release == 1
    assert _detects(agent, 0, tmp_path)


def test_a_release_the_signed_metadata_does_not_list_is_refused(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, transport: AppTransport, tmp_path: Path
) -> None:
    """The heartbeat only names a release; a server (or a proxy) naming one that was never signed gets nowhere."""
    _publish(database, repo, _content(0))
    _cycle(agent, clock)

    def lie(request: httpx2.Request) -> httpx2.Response | None:
        if not request.url.path.endswith("/heartbeat"):
            return None
        answer = json.loads(transport.client.send(request).read())
        answer["updates"] = {"release": 99}
        return httpx2.Response(200, content=json.dumps(answer).encode())

    transport.fail = lie
    _cycle(agent, clock)
    transport.fail = None
    _assert_protected_and_reported(agent, database, clock, tmp_path, "not in the signed repository")


def test_a_failure_backs_off_and_never_loops(
    agent: Daemon,
    database: Database,
    repo: UpdateRepository,
    clock: Clock,
    transport: AppTransport,
    wallclock: WallClock,
) -> None:
    _installed_one_then_offer_two(agent, database, repo, clock)
    tries: list[str] = []

    def refuse(request: httpx2.Request) -> httpx2.Response:
        tries.append(request.url.path)
        return httpx2.Response(503, headers={"Retry-After": "1"}, content=b'{"message": "busy"}')

    _fail_updates(transport, refuse)
    _cycle(agent, clock)
    assert len(tries) == 1
    waits = []
    for _ in range(6):
        first = agent.updater.state.next_check_at
        assert first is not None
        for _ in range(5):  # heartbeats before the backoff ends do not try again
            _cycle(agent, clock)
        assert len(tries) == len(waits) + 1
        waits.append((first - wallclock.now).total_seconds())
        wallclock.now = first + timedelta(seconds=1)
        _cycle(agent, clock)
    assert waits[-1] > waits[0] * 4  # exponential
    assert max(waits) <= agent.settings.update_backoff_cap
    transport.fail = None
    wallclock.now = agent.updater.state.next_check_at + timedelta(seconds=1)  # type: ignore[operator]
    _cycle(agent, clock)
    assert agent.updater.status().release == 2
    assert agent.updater.status().last_error == ""


def test_the_update_task_checks_at_once(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, client: TestClient
) -> None:
    _publish(database, repo, _content(0))
    clock.now += 3600
    agent.step()
    agent.run_jobs()
    _publish(database, repo, _content(0, 1))
    task_id = _task(client, agent.identity, "update")
    _cycle(agent, clock)
    agent.step()
    run = _run(client, task_id)
    assert run["state"] == "done", run
    assert run["result"]["release"] == 2


def test_targets_are_only_for_enrolled_agents(client: TestClient, database: Database, repo: UpdateRepository) -> None:
    _publish(database, repo, _content(0))
    assert client.get("/api/v1/updates/metadata/timestamp.json").status_code == 401
    with database.session() as session:
        target = session.get(UpdateTarget, full_target(1))
        assert target is not None
    assert client.get(f"/api/v1/updates/targets/signatures/{target.sha256}.1.tar.gz").status_code == 401


def test_an_agent_version_arrives_through_the_repository_and_the_agent_restarts_into_it(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, agent_settings: AgentSettings
) -> None:

    with database.session() as session:
        rollout.add_agent_release(session, repo, SYSTEM, "0.1.0+test7", repository_wheel("0.1.0+test7"))
        session.commit()
    repo.forget_offers()  # type: ignore[attr-defined]
    agent._updater = None  # the daemon's own updater, which stages agent software
    clock.now += 3600
    agent.step()
    agent.run_jobs()
    assert agent.restart_into == "0.1.0+test7"
    assert (agent_settings.state_dir / "software" / "0.1.0+test7" / "garrison" / "__init__.py").exists()
    agent.step()  # what the job brought is sent first
    with pytest.raises(software.RestartRequested, match=r"0\.1\.0\+test7"):
        agent.step()


def test_a_tampered_agent_version_is_not_staged(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, agent_settings: AgentSettings
) -> None:

    with database.session() as session:
        row = rollout.add_agent_release(session, repo, SYSTEM, "0.1.0+test8", repository_wheel("0.1.0+test8"))
        target = session.get(UpdateTarget, row.target_path)
        assert target is not None
        stored = repo.targets_dir / target.sha256
        session.commit()
    data = stored.read_bytes()
    stored.write_bytes(data[:200] + bytes([data[200] ^ 1]) + data[201:])
    repo.forget_offers()  # type: ignore[attr-defined]
    agent._updater = None
    clock.now += 3600
    agent.step()
    agent.run_jobs()
    assert agent.restart_into is None
    assert not (agent_settings.state_dir / "software" / "0.1.0+test8").exists()
    assert "does not match its signed length or hash" in agent.updater.status().last_error


def test_the_release_is_compiled_once(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, agent_settings: AgentSettings
) -> None:
    """The updater compiles the release where the engine will load it, so the reload finds it in the cache (on a
    large database a second compilation costs seconds and hundreds of MiB)."""
    _publish(database, repo, _content(0))
    _cycle(agent, clock)
    cache = agent_settings.state_dir / "cache"
    compiled = sorted(entry.name for entry in cache.iterdir())
    assert len(compiled) == 1
    load_engine(agent_settings)
    assert sorted(entry.name for entry in cache.iterdir()) == compiled


def test_agent_status_tells_the_release_and_the_last_error(
    agent: Daemon, database: Database, repo: UpdateRepository, clock: Clock, transport: AppTransport,
    agent_settings: AgentSettings,
) -> None:  # fmt: skip
    from click.testing import CliRunner

    from garrison.cli.main import cli

    def status() -> str:
        env = {"GARRISON_AGENT_STATE_DIR": str(agent_settings.state_dir)}
        return CliRunner().invoke(cli, ["agent", "status"], env=env).output

    assert "signatures: no release from the server yet" in status()
    _installed_one_then_offer_two(agent, database, repo, clock)
    transport.fail = lambda request: httpx2.Response(503) if "/updates/" in request.url.path else None
    _cycle(agent, clock)
    shown = status()
    assert "signatures: release 1, published" in shown
    assert "last update error: the update download failed: the server is busy (HTTP 503" in shown, shown
    assert "next update check:" in shown
