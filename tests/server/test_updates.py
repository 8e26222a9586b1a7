"""The server's update channel: the TUF repository, releases, staged rollout and pull-back (SQLite and
PostgreSQL). A real python-tuf client reads the repository through the application."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface, Updater

from garrison.engine.signatures import bundle
from garrison.protocol.updates import delta_target, full_target
from garrison.server.audit.models import AuditEvent
from garrison.server.audit.service import SYSTEM
from garrison.server.db import Database
from garrison.server.policies.models import AgentGroup, AllowedFile
from garrison.server.settings import ServerSettings
from garrison.server.updates import releases, rollout, service
from garrison.server.updates.models import Release, Stage, UpdateTarget
from garrison.server.updates.releases import ReleasePolicy, ReleaseRefused
from garrison.server.updates.repository import Lifetimes, RepositoryError, UpdateRepository, load_signer
from tests.server.conftest import enroll_agent, enrollment_token, login


def _hdb(*names: str) -> dict[str, bytes]:
    lines = []
    for name in names:
        sample = name.encode() * 3
        lines.append(f"{hashlib.md5(sample).hexdigest()}:{len(sample)}:Garrison.Test.{name}\n")
    return {"test.hdb": "".join(lines).encode()}


@pytest.fixture
def repo(tmp_path: Path, session: Session) -> UpdateRepository:
    repository = UpdateRepository(tmp_path / "data")
    repository.initialise(session)
    return repository


def _publish(session: Session, repo: UpdateRepository, content: dict[str, bytes], **kw: Any) -> Release | None:
    return releases.publish(session, repo, content, actor=SYSTEM, reason="test", **kw)


class _SessionFetcher(FetcherInterface):
    """Serves the repository straight from the database session (no HTTP), for a real TUF client."""

    def __init__(self, session: Session, repo: UpdateRepository) -> None:
        self.session = session
        self.repo = repo

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            if url.startswith("meta/"):
                yield self.repo.metadata_file(self.session, url.removeprefix("meta/"))
            else:
                stored, _ = self.repo.target_file(self.session, url.removeprefix("targets/"))
                yield stored.read_bytes()
        except Exception as exc:
            raise DownloadHTTPError(str(exc), 404) from exc


def _tuf_client(session: Session, repo: UpdateRepository, directory: Path, bootstrap: bytes | None) -> Updater:
    directory.mkdir(exist_ok=True)
    return Updater(
        str(directory),
        "meta/",
        target_base_url="targets/",
        fetcher=_SessionFetcher(session, repo),
        bootstrap=bootstrap,
    )


def test_releases_are_numbered_only_when_the_content_changes(session: Session, repo: UpdateRepository) -> None:
    first = _publish(session, repo, _hdb("a"))
    assert first is not None and first.number == 1 and first.stage == Stage.GENERAL
    assert first.signatures == 1
    assert _publish(session, repo, _hdb("a")) is None  # same content: nothing new
    # Lines in another order (or repeated) are the same signature set.
    reordered = {"test.hdb": b"".join(reversed(_hdb("a", "b")["test.hdb"].splitlines(keepends=True)))}
    second = _publish(session, repo, _hdb("a", "b"))
    assert second is not None and second.number == 2
    assert _publish(session, repo, reordered) is None


def test_a_set_that_does_not_compile_is_refused_and_the_current_release_stays(
    session: Session, repo: UpdateRepository
) -> None:
    _publish(session, repo, _hdb("a"))
    with pytest.raises(ReleaseRefused, match="does not compile"):
        _publish(session, repo, {"broken.ndb": b"Broken.Sig:0:*:zz-not-hex\n"})
    assert releases.latest(session).number == 1  # type: ignore[union-attr]


def test_deltas_are_listed_when_smaller_and_old_releases_are_pruned(session: Session, repo: UpdateRepository) -> None:
    names = [f"s{i}" for i in range(400)]
    policy = ReleasePolicy(keep=3, delta_bases=2)
    for count in range(1, 6):
        _publish(session, repo, _hdb(*names[: 300 + count]), policy=policy)
    paths = set(session.scalars(select(UpdateTarget.path)))
    assert {full_target(n) for n in (3, 4, 5)} <= paths
    assert full_target(1) not in paths and full_target(2) not in paths
    assert delta_target(4, 5) in paths and delta_target(3, 5) in paths
    delta = session.get(UpdateTarget, delta_target(4, 5))
    full = session.get(UpdateTarget, full_target(5))
    assert delta is not None and full is not None and delta.length * 5 < full.length
    # The delta rebuilds the release exactly.
    old = releases.content_of(repo, session, 4, policy)
    rebuilt = bundle.apply_delta(old, repo.load_target(delta))
    assert bundle.digest(rebuilt) == session.get(Release, 5).content_sha256  # type: ignore[union-attr]


def test_a_tuf_client_follows_releases_and_a_key_rotation(
    session: Session, repo: UpdateRepository, tmp_path: Path
) -> None:
    _publish(session, repo, _hdb("a"))
    bootstrap = repo.metadata_file(session, "1.root.json")
    client = _tuf_client(session, repo, tmp_path / "client", bootstrap)
    client.refresh()
    target = client.get_targetinfo(full_target(1))
    assert target is not None and target.custom["garrison"]["release"] == 1

    # The root key (kept offline) signs new online keys and a new root key; the client follows the chain.
    old_root = load_signer(repo.key_path("root"))
    new_root_path = tmp_path / "offline" / "root-2.pem"
    version = repo.rotate(session, old_root, new_root_key=new_root_path)
    assert version == 2
    _publish(session, repo, _hdb("a", "b"))
    client = _tuf_client(session, repo, tmp_path / "client", None)
    client.refresh()
    assert client.get_targetinfo(full_target(2)) is not None

    with pytest.raises(RepositoryError, match="not the root key"):
        repo.rotate(session, old_root)  # the replaced root key no longer signs anything


def test_expiring_metadata_is_resigned_and_warned_of(session: Session, tmp_path: Path) -> None:
    repo = UpdateRepository(tmp_path / "data", Lifetimes(root=timedelta(days=40), timestamp=timedelta(hours=24)))
    start = datetime.now(UTC)
    repo.initialise(session, start)
    assert repo.refresh(session, start + timedelta(hours=1)) == []
    assert repo.refresh(session, start + timedelta(hours=13)) == ["timestamp"]
    assert repo.refresh(session, start + timedelta(days=4)) == ["snapshot", "timestamp"]
    codes = {notice.code for notice in service.notices(session, repo, start + timedelta(days=11))}
    assert "root_expiring" in codes  # 29 days left of 40
    assert "root_key_online" in codes
    repo.key_path("root").rename(tmp_path / "root-offline.pem")
    codes = {notice.code for notice in service.notices(session, repo, start + timedelta(days=1))}
    assert "root_key_online" not in codes and "root_expiring" not in codes


def _group(session: Session, unit_id: int, name: str = "máy thử nghiệm") -> AgentGroup:
    group = AgentGroup(name=name, unit_id=unit_id)
    session.add(group)
    session.flush()
    return group


def test_canary_releases_go_to_the_canaries_then_to_everyone(
    session: Session, repo: UpdateRepository, tree: dict[str, int]
) -> None:
    _publish(session, repo, _hdb("a"))
    group = _group(session, tree["province"])
    rollout.configure(session, SYSTEM, canary_group_id=group.id, canary_hours=24, auto_promote=True)
    release = _publish(session, repo, _hdb("a", "b"))
    assert release is not None and release.stage == Stage.CANARY and release.available_at is None
    offer = rollout.current_offer(session)
    assert offer.for_agent(group.id).release == 2
    assert offer.for_agent(None).release == 1
    assert rollout.auto_promote(session, SYSTEM, release.created_at + timedelta(hours=23)) == []
    assert rollout.auto_promote(session, SYSTEM, release.created_at + timedelta(hours=25)) == [2]
    assert rollout.current_offer(session).for_agent(None).release == 2


def test_a_false_positive_holds_a_canary_release(
    session: Session, repo: UpdateRepository, tree: dict[str, int]
) -> None:
    _publish(session, repo, _hdb("a"))
    group = _group(session, tree["province"])
    rollout.configure(session, SYSTEM, canary_group_id=group.id, canary_hours=1, auto_promote=True)
    release = _publish(session, repo, _hdb("a", "b"))
    assert release is not None
    session.add(AllowedFile(sha256="0" * 64, reason="tệp kế toán bị nhận nhầm", added_at=release.created_at))
    session.flush()
    assert rollout.auto_promote(session, SYSTEM, release.created_at + timedelta(hours=2)) == []
    assert "false positive" in release.hold_reason
    rollout.promote(session, SYSTEM, release.number)  # an admin decides anyway
    assert release.stage == Stage.GENERAL


def test_pulling_back_publishes_the_old_content_under_a_new_number(session: Session, repo: UpdateRepository) -> None:
    _publish(session, repo, _hdb("a"))
    bad = _publish(session, repo, _hdb("a", "b"))
    assert bad is not None
    restored = rollout.pull_back(session, repo, SYSTEM, bad.number)
    assert restored.number == 3 and restored.restores == 1 and restored.stage == Stage.GENERAL
    assert bad.stage == Stage.PULLED
    assert restored.content_sha256 == session.get(Release, 1).content_sha256  # type: ignore[union-attr]
    assert rollout.current_offer(session).for_agent(None).release == 3
    actions = set(session.scalars(select(AuditEvent.action)))
    assert {"release.publish", "release.pull"} <= actions


def test_the_api_lets_admins_act_and_others_read(
    client: TestClient, database: Database, settings: ServerSettings, tree: dict[str, int]
) -> None:
    csrf = login(client)
    answer = client.post("/api/v1/releases", json={"reason": "thử"}, headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200, answer.text  # no sources yet: nothing to publish
    assert answer.json() is None
    repo: UpdateRepository = client.app.state.update_repository  # type: ignore[attr-defined]
    with database.session() as session:
        _publish(session, repo, _hdb("a"))
        _publish(session, repo, _hdb("a", "b"))
        session.commit()
    listed = client.get("/api/v1/releases").json()
    assert [r["number"] for r in listed] == [2, 1]
    pulled = client.post("/api/v1/releases/2/pull", headers={"X-CSRF-Token": csrf})
    assert pulled.status_code == 200, pulled.text
    assert pulled.json()["restores"] == 1
    status = client.get("/api/v1/updates/status").json()
    assert status["general_release"] == 3
    assert {"root", "targets", "snapshot", "timestamp"} <= set(status["expires"])


def test_heartbeats_name_the_release_for_the_agent(
    client: TestClient, database: Database, tree: dict[str, int]
) -> None:
    enrolled = enroll_agent(client, enrollment_token(client, tree["hospital"]))
    agent_id, secret = enrolled["agent_id"], enrolled["secret"]
    repo: UpdateRepository = client.app.state.update_repository  # type: ignore[attr-defined]
    with database.session() as session:
        _publish(session, repo, _hdb("a"))
        session.commit()
    client.app.state.offers.clear()  # type: ignore[attr-defined]
    beat = {"inventory": {"hostname": "may-01", "updates": {"release": 1, "last_error": ""}}}
    answer = client.post("/api/v1/agent/heartbeat", json=beat, headers={"Authorization": f"Agent {agent_id}:{secret}"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["updates"] == {"release": 1, "agent_version": None}


def test_maintenance_imports_the_watched_directory_and_publishes(
    database: Database, settings: ServerSettings, tmp_path: Path
) -> None:
    watched = tmp_path / "usb"
    watched.mkdir()
    settings = settings.model_copy(update={"updates_watch_dir": watched})
    repo = service.repository_for(settings)
    dropped = watched / "tinh-bac-ninh.hdb"
    dropped.write_bytes(_hdb("a", "b")["test.hdb"])
    old = datetime.now(UTC).timestamp() - 60  # copied a minute ago: complete
    os.utime(dropped, (old, old))

    report = service.maintain(database, repo, settings)
    assert report.errors == []
    assert report.imported == 1
    assert report.published == 1
    assert (watched / "imported" / "tinh-bac-ninh.hdb").exists()
    again = service.maintain(database, repo, settings)
    assert again.published is None and again.errors == []  # nothing changed, nothing new


def test_upstream_sources_are_fetched_when_due(
    database: Database, settings: ServerSettings, tree: dict[str, int]
) -> None:
    from garrison.server.signatures import service as signatures
    from garrison.server.signatures.models import SignatureSource, SourceKind
    from garrison.server.signatures.store import SourceStore

    served = {"count": 0}

    def get(url: str) -> bytes:  # the upstream mirror is outside this machine
        served["count"] += 1
        assert url == "https://mirror.example.vn/tinh.hdb"
        return _hdb("a")["test.hdb"]

    with database.session() as session:
        session.add(
            SignatureSource(
                name="mirror",
                slug="mirror",
                kind=SourceKind.UPSTREAM,
                origin="https://mirror.example.vn/tinh.hdb",
                format="clamav-plain",
            )
        )
        session.flush()
        store = SourceStore(settings.data_dir)
        now = datetime.now(UTC)
        assert service.fetch_due_upstream(session, store, settings, get, now) == 1
        assert service.fetch_due_upstream(session, store, settings, get, now + timedelta(minutes=30)) == 0
        assert served["count"] == 1  # not due yet
        assert service.fetch_due_upstream(session, store, settings, get, now + timedelta(hours=3)) == 0
        assert served["count"] == 2  # fetched again, unchanged
        assert "test.hdb" not in signatures.content(session, store)
        assert any(name.startswith("mirror-") for name in signatures.content(session, store))
