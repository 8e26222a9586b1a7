"""Federation in-process: a parent app (on SQLite and PostgreSQL, the ``client`` fixture) and a child app on its own
SQLite database, the child's requests carried to the parent's app by a transport that posts through the parent's
test client (the only fake: the network between them).

Joining (one-time token, key files 0600), pushing (figures of the child's whole tree, submitted reports stored once
as the child unit's reports here), and every refusal: tampered body, wrong key, replay, stale clock, unknown child,
revoked child, oversized body, used and expired tokens; freshness; roles; a parent that is down.
"""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from garrison.server import tls
from garrison.server.app import create_app
from garrison.server.audit.models import AuditEvent
from garrison.server.auth.scope import Scope
from garrison.server.db import Database, make_engine, migrate, utcnow
from garrison.server.federation import child, parent, signing
from garrison.server.federation.models import FederationAcknowledged, FederationChild
from garrison.server.reports import statistics
from garrison.server.reports.models import ReportSubmission
from garrison.server.settings import ServerSettings
from tests.conftest import free_port
from tests.server.conftest import (
    PASSWORD,
    agent_auth,
    detection_event,
    enroll_agent,
    enrollment_token,
    login,
    setup_admin,
)

PARENT_URL = "https://tinh.example.gov.vn:8443"


def through(client: TestClient) -> child.Transport:
    """The child's requests, posted to the parent's app in-process."""

    def post(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        answer = client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
        return answer.status_code, answer.content

    return post


class Child:
    """A second Garrison server: its own settings, data directory, SQLite database and app."""

    def __init__(self, root: Path) -> None:
        self.settings = ServerSettings(
            data_dir=root, password_time_cost=1, password_memory_kib=64, updates_check_seconds=0,
            federation_push_seconds=0, statistics_record_seconds=0, alerts_check_seconds=0,
        )  # fmt: skip
        self.database = Database(make_engine(self.settings.resolved_database_url()))
        migrate(self.database.engine)
        self.client = TestClient(create_app(self.settings, self.database, run_migrations=False))
        self.client.base_url = self.client.base_url.copy_with(scheme="https")

    def link(self) -> child.Link:
        link = child.link_of(self.settings.data_dir)
        assert link is not None
        return link


@pytest.fixture
def district(tmp_path: Path) -> Iterator[Child]:
    """The child server: a district tree with one computer that found one file, and a submitted report."""
    server = Child(tmp_path / "child")
    with server.client:
        setup_admin(server.client, server.database)
        csrf = login(server.client)
        answer = server.client.post(
            "/api/v1/units", json={"name": "Huyện Gia Lâm", "kind": "district", "parent_id": None},
            headers={"X-CSRF-Token": csrf},
        )  # fmt: skip
        assert answer.status_code == 201, answer.text
        unit = answer.json()["id"]
        server.client.cookies.clear()
        enrolled = enroll_agent(server.client, enrollment_token(server.client, unit), "may-huyen-01")
        answer = server.client.post(
            "/api/v1/agent/events", json={"detections": [detection_event()]}, headers=agent_auth(enrolled)
        )
        assert answer.status_code == 200, answer.text
        with server.database.session() as session:
            figures = statistics.compute(
                session,
                Scope.whole_tree(writable=False),
                None,
                *statistics.quarter_bounds(*statistics.current_quarter()),
            ).to_json()
            session.add(
                ReportSubmission(
                    unit_id=unit, year=2026, quarter=3, version=1, figures=figures, info={"number": "12/BC-UBND"},
                    submitted_by_name="Nguyễn Văn An",
                )
            )  # fmt: skip
        yield server
    server.database.engine.dispose()


def _admin_headers(client: TestClient) -> dict[str, str]:
    client.cookies.clear()
    return {"X-CSRF-Token": login(client)}


def register(client: TestClient, unit: int, name: str = "Huyện Gia Lâm") -> dict[str, Any]:
    answer = client.post(
        "/api/v1/federation/children", json={"name": name, "unit_id": unit}, headers=_admin_headers(client)
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


@pytest.fixture
def joined(client: TestClient, tree: dict[str, int], district: Child) -> Child:
    """The district joined the parent, standing for the health department."""
    token = register(client, tree["health"])["token"]
    child.join(district.settings, PARENT_URL, token, "PINNED PEM", "AB:CD", transport=through(client))
    return district


def _children(client: TestClient) -> dict[str, dict[str, Any]]:
    answer = client.get("/api/v1/federation/children", headers=_admin_headers(client))
    assert answer.status_code == 200, answer.text
    return {c["name"]: c for c in answer.json()}


# -- joining --------------------------------------------------------------------------------------------------


def test_register_gives_a_one_time_token_kept_hashed(
    client: TestClient, tree: dict[str, int], database: Database
) -> None:
    created = register(client, tree["health"])
    assert created["token"].startswith("gsf_") and created["state"] == "waiting"
    assert created["command"].startswith(f"garrison server federation join https://testserver {created['token']}")
    with database.session() as session:
        row = session.get(FederationChild, created["id"])
        assert row is not None and row.join_token_hash not in (None, created["token"])
        assert (
            session.scalar(select(AuditEvent.action).where(AuditEvent.target_type == "federation_child"))
            == "federation.child_register"
        )
    # The same name, or a second child for the same unit, is refused.
    headers = _admin_headers(client)
    again = client.post("/api/v1/federation/children", json={"name": "Huyện Gia Lâm", "unit_id": tree["education"]},
                        headers=headers)  # fmt: skip
    assert again.status_code == 409
    same_unit = client.post("/api/v1/federation/children", json={"name": "Khác", "unit_id": tree["health"]},
                            headers=headers)  # fmt: skip
    assert same_unit.status_code == 409


def test_join_saves_the_link_and_a_private_key_only_the_server_reads(
    client: TestClient, joined: Child, tree: dict[str, int]
) -> None:
    link = joined.link()
    assert (link.parent_name, link.name, link.unit_name) == ("Tỉnh Bắc Ninh", "Huyện Gia Lâm", "Sở Y tế")
    assert link.parent_url == PARENT_URL and link.fingerprint == "AB:CD"
    folder = child.directory(joined.settings.data_dir)
    for name in (child.LINK_FILE, child.KEY_FILE, child.STATUS_FILE):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    assert not list(folder.glob(".*"))  # no key left half-made
    key = signing.load_key(folder / child.KEY_FILE)
    assert _children(client)["Huyện Gia Lâm"]["joined_at"] is not None
    with pytest.raises(child.FederationError, match="already reports"):
        child.join(joined.settings, PARENT_URL, "gsf_whatever", "PEM", "AB", transport=through(client))
    assert signing.load_key(folder / child.KEY_FILE).public_key() == key.public_key()


def test_a_join_token_works_once_and_not_after_it_expired(
    client: TestClient, tree: dict[str, int], tmp_path: Path, database: Database
) -> None:
    token = register(client, tree["health"])["token"]
    first, second = Child(tmp_path / "a"), Child(tmp_path / "b")
    child.join(first.settings, PARENT_URL, token, "PEM", "AB", transport=through(client))
    with pytest.raises(child.FederationError, match="unknown or already used join token"):
        child.join(second.settings, PARENT_URL, token, "PEM", "AB", transport=through(client))
    assert child.link_of(second.settings.data_dir) is None
    assert not (child.directory(second.settings.data_dir) / child.KEY_FILE).exists()

    expired = register(client, tree["education"], "Sở Giáo dục")
    with database.session() as session:
        row = session.get(FederationChild, expired["id"])
        assert row is not None
        row.join_expires_at = utcnow() - timedelta(minutes=1)
    with pytest.raises(child.FederationError, match="expired"):
        child.join(second.settings, PARENT_URL, expired["token"], "PEM", "AB", transport=through(client))
    for server in (first, second):
        server.database.engine.dispose()


def test_a_join_with_a_key_that_is_not_ed25519_is_refused(client: TestClient, tree: dict[str, int]) -> None:
    token = register(client, tree["health"])["token"]
    short = base64.b64encode(bytes(31)).decode()  # an Ed25519 public key is 32 bytes
    for key in (short, "!" * 44):
        answer = client.post("/api/v1/federation/join", json={"token": token, "public_key": key})
        assert answer.status_code == 400, answer.text
    # The token was not spent by the refusals.
    answer = client.post(
        "/api/v1/federation/join", json={"token": token, "public_key": base64.b64encode(bytes(32)).decode()}
    )
    assert answer.status_code == 201, answer.text


# -- pushing --------------------------------------------------------------------------------------------------


def test_a_push_brings_the_figures_and_the_reports_once(
    client: TestClient, joined: Child, tree: dict[str, int], database: Database
) -> None:
    pushed = child.push(joined.database, joined.settings, transport=through(client))
    assert pushed.reports == 1
    listed = _children(client)["Huyện Gia Lâm"]
    assert listed["state"] == "fresh" and listed["unit_id"] == tree["health"] and listed["reports_received"] == 1
    year, quarter = statistics.current_quarter()
    figures = listed["figures"]
    assert (figures["year"], figures["quarter"]) == (year, quarter)
    assert (figures["enrolled"], figures["active"], figures["detections"], figures["removed"]) == (1, 1, 1, 1)
    totals = client.get("/api/v1/federation/totals", headers=_admin_headers(client)).json()
    assert totals["children"] == 1 and totals["figures"]["detections"] == 1
    detail = client.get(f"/api/v1/federation/children/{listed['id']}", headers=_admin_headers(client)).json()
    assert (detail["quarters"][0]["year"], detail["quarters"][0]["quarter"]) == (year, quarter)
    assert detail["quarters"][0]["statistics"]["current"]["detections"] == 1

    with database.session() as session:
        stored = session.scalars(select(ReportSubmission).where(ReportSubmission.received_from.is_not(None))).all()
        assert len(stored) == 1
        report = stored[0]
        assert (report.unit_id, report.year, report.quarter, report.version) == (tree["health"], 2026, 3, 1)
        assert report.received_from == "Huyện Gia Lâm" and report.submitted_by_name == "Nguyễn Văn An"
        assert report.info["number"] == "12/BC-UBND" and report.info["child_unit_name"] == "Huyện Gia Lâm"
        assert report.figures["current"]["detections"] == 1

    # Acknowledged: not sent again. Even when the child forgets the acknowledgement (an answer lost on the way),
    # the parent stores the report once.
    assert child.push(joined.database, joined.settings, transport=through(client)).reports == 0
    with joined.database.session() as session:
        session.execute(delete(FederationAcknowledged))
    assert child.push(joined.database, joined.settings, transport=through(client)).reports == 1
    with database.session() as session:
        count = select(func.count()).select_from(ReportSubmission).where(ReportSubmission.received_from.is_not(None))
        assert session.scalar(count) == 1
    status = child.status_of(joined.settings.data_dir)
    assert status.last_push_at is not None and status.last_error is None


def test_freshness_follows_the_childs_push_interval(client: TestClient, joined: Child, database: Database) -> None:
    child.push(joined.database, joined.settings, transport=through(client))
    with database.session() as session:
        row = session.scalars(select(FederationChild)).one()
        row.push_seconds = 600
        assert parent.state_of(row, 900, now=utcnow() + timedelta(minutes=29)) == "fresh"
        assert parent.state_of(row, 900, now=utcnow() + timedelta(minutes=31)) == "stale"
        row.push_seconds = None  # a child that pushes by hand only: the parent's own interval
        assert parent.state_of(row, 900, now=utcnow() + timedelta(minutes=44)) == "fresh"
        assert parent.state_of(row, 900, now=utcnow() + timedelta(minutes=46)) == "stale"
        row.received_at = utcnow() - timedelta(hours=1)
    assert _children(client)["Huyện Gia Lâm"]["state"] == "stale"


def _signed(joined: Child, key: Ed25519PrivateKey | None = None, **changes: Any) -> tuple[bytes, dict[str, str]]:
    """A push body as the child makes it (no reports), signed with its key or ``key``."""
    link = joined.link()
    body = {
        "format": 1,
        "child_id": link.child_id,
        "sequence": int(datetime.now(UTC).timestamp() * 1_000_000),
        "sent_at": datetime.now(UTC).isoformat(),
        "quarters": [],
        **changes,
    }
    data = json.dumps(body).encode()
    key = key or signing.load_key(child.directory(joined.settings.data_dir) / child.KEY_FILE)
    headers = {signing.CHILD_HEADER: str(link.child_id), signing.SIGNATURE_HEADER: signing.sign(key, data)}
    return data, headers


def _post(client: TestClient, data: bytes, headers: dict[str, str]) -> Any:
    client.cookies.clear()
    return client.post("/api/v1/federation/push", content=data, headers={**headers, "Content-Type": "application/json"})


def test_pushes_that_are_not_the_childs_own_are_refused(client: TestClient, joined: Child) -> None:
    data, headers = _signed(joined)
    # A byte changed (a space: the same JSON once parsed, yet not the bytes that were signed).
    tampered = data.replace(b'"quarters": []', b'"quarters":  []')
    assert tampered != data
    assert _post(client, tampered, headers).status_code == 401
    other_key = Ed25519PrivateKey.generate()
    answer = _post(client, *_signed(joined, other_key))
    assert answer.status_code == 401 and "signature" in answer.json()["message"]
    # The right key, but the body names another child than the header.
    data, headers = _signed(joined, child_id=joined.link().child_id + 1)
    assert _post(client, data, headers).status_code == 401
    unknown = {**headers, signing.CHILD_HEADER: "999999"}
    answer = _post(client, data, unknown)
    assert answer.status_code == 401 and "unknown child" in answer.json()["message"]
    assert _post(client, data, {}).status_code == 401


def test_a_replayed_or_stale_push_is_refused(client: TestClient, joined: Child) -> None:
    data, headers = _signed(joined)
    assert _post(client, data, headers).status_code == 200
    again = _post(client, data, headers)
    assert again.status_code == 409 and "replayed" in again.json()["message"]
    old = _signed(joined, sent_at=(datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                  sequence=int(datetime.now(UTC).timestamp() * 1_000_000) + 10)  # fmt: skip
    answer = _post(client, *old)
    assert answer.status_code == 409 and "stale" in answer.json()["message"]
    malformed = _signed(joined, quarters=[{"year": 2026, "quarter": 4, "statistics": {"unit_id": "x"}}])
    assert _post(client, *malformed).status_code == 400


def test_an_oversized_push_is_refused_before_it_is_read(
    client: TestClient, joined: Child, settings: ServerSettings
) -> None:
    padding = "x" * settings.federation_max_push_bytes
    answer = _post(client, *_signed(joined, padding=padding))
    assert answer.status_code == 413


def test_a_revoked_child_is_refused(client: TestClient, joined: Child, database: Database) -> None:
    child_id = joined.link().child_id
    answer = client.post(f"/api/v1/federation/children/{child_id}/revoke", headers=_admin_headers(client))
    assert answer.status_code == 200 and answer.json()["state"] == "revoked"
    with pytest.raises(child.FederationError, match="revoked"):
        child.push(joined.database, joined.settings, transport=through(client))
    status = child.status_of(joined.settings.data_dir)
    assert status.last_error is not None and "revoked" in status.last_error
    with database.session() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "federation_child"))
        assert "federation.child_revoke" in set(actions)
    # A revoked child gets no new token; a new registration for the same unit is allowed.
    token = client.post(f"/api/v1/federation/children/{child_id}/token", headers=_admin_headers(client))
    assert token.status_code == 409


def test_a_new_token_lets_a_child_join_again_with_a_new_key(client: TestClient, joined: Child, tmp_path: Path) -> None:
    child.push(joined.database, joined.settings, transport=through(client))
    child_id = joined.link().child_id
    answer = client.post(f"/api/v1/federation/children/{child_id}/token", headers=_admin_headers(client))
    assert answer.status_code == 200, answer.text
    assert child.leave(joined.settings.data_dir) and child.link_of(joined.settings.data_dir) is None
    child.join(joined.settings, PARENT_URL, answer.json()["token"], "PEM", "AB", transport=through(client))
    # A new link: the report is sent again, and still stored once.
    assert child.push(joined.database, joined.settings, transport=through(client)).reports == 1
    assert _children(client)["Huyện Gia Lâm"]["reports_received"] == 1


def test_a_parent_that_is_down_is_recorded_and_tried_again(client: TestClient, joined: Child) -> None:
    cert, _key = tls.make_self_signed(["127.0.0.1"])
    nobody = child.https_transport(f"https://127.0.0.1:{free_port()}", cert.decode(), "AB:CD")
    with pytest.raises(child.FederationError, match="cannot reach the parent"):
        child.push(joined.database, joined.settings, transport=nobody)
    status = child.status_of(joined.settings.data_dir)
    assert status.last_error and "cannot reach the parent" in status.last_error and status.last_push_at is None
    joined.client.cookies.clear()
    headers = {"X-CSRF-Token": login(joined.client)}
    link = joined.client.get("/api/v1/federation/link", headers=headers).json()
    assert link["joined"] and link["parent_name"] == "Tỉnh Bắc Ninh" and "cannot reach" in link["last_error"]
    # The next pass reaches it: the error is cleared.
    child.push(joined.database, joined.settings, transport=through(client))
    status = child.status_of(joined.settings.data_dir)
    assert status.last_error is None and status.last_push_at is not None


def test_only_administrators_of_the_whole_tree(client: TestClient, tree: dict[str, int]) -> None:
    register(client, tree["health"])
    for username in ("yte.admin", "yte.audit"):
        client.cookies.clear()
        headers = {"X-CSRF-Token": login(client, username, PASSWORD)}
        assert client.get("/api/v1/federation/children", headers=headers).status_code == 403
        assert client.get("/api/v1/federation/totals", headers=headers).status_code == 403
        body = {"name": "Xã", "unit_id": tree["hospital"]}
        assert client.post("/api/v1/federation/children", json=body, headers=headers).status_code == 403
        assert client.post("/api/v1/federation/children/1/revoke", headers=headers).status_code == 403
    client.cookies.clear()
    assert client.get("/api/v1/federation/children").status_code == 401


def test_the_background_pass_does_nothing_without_a_parent(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "alone")
    # No link: the pass returns before it touches the database (this one does not even exist).
    child.push_if_joined(Database(make_engine("sqlite:///" + str(tmp_path / "none" / "x.db"))), settings)
    assert not (tmp_path / "none" / "x.db").exists()
    with pytest.raises(child.FederationError, match="does not report to a parent"):
        child.push(Database(make_engine(f"sqlite:///{tmp_path / 'y.db'}")), settings)
