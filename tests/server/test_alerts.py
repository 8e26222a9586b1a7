"""Alerts on SQLite and PostgreSQL, with a real local SMTP server (aiosmtpd) and a real local webhook receiver:
each kind fires on the right data and only in its rule's subtree, a digest groups many records into one message,
the quiet interval holds, a failing recipient is retried without blocking another, conditions fire once and again
only after they cleared, no secret reaches the logs, and the API keeps to the caller's scope and role."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from fastapi.testclient import TestClient
from sqlalchemy import select

from garrison.server import tls
from garrison.server.agents.models import Agent
from garrison.server.alerts import deliver, digest, evaluate, service
from garrison.server.alerts.models import AlertDelivery, AlertRecipient, AlertRecord, AlertRule
from garrison.server.audit.models import AuditEvent
from garrison.server.db import Database, utcnow
from garrison.server.detections.models import Detection
from garrison.server.settings import ServerSettings
from garrison.server.updates.service import Notice
from tests.server.conftest import login
from tests.server.console.test_protection_pages import add_agent

SECRET_PATH = "/hooks/T0KEN-s3cr3t-9f8e7d"  # what a chat service's webhook URL carries as its credential
SMTP_PASSWORD = "mật-khẩu-thư-rất-bí-mật"


# -- a real SMTP server and a real webhook receiver ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Mailbox:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password.decode() == SMTP_PASSWORD
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(_free_port())
    controller = Controller(
        box, hostname="127.0.0.1", port=box.port, authenticator=box.authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@dataclass
class Receiver:
    url: str
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def at(self, path: str) -> list[dict[str, Any]]:
        return [body for where, body in self.posts if where == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = state.statuses.get(self.path, 200)
            if status == 200:
                state.posts.append((self.path, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def settings(tmp_path: Path, mailbox: Mailbox) -> ServerSettings:
    """conftest's settings, with the local mail server (plain SMTP with a login, the password from a file)."""
    password_file = tmp_path / "smtp-password"
    password_file.write_text(SMTP_PASSWORD + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    return ServerSettings(
        data_dir=tmp_path,
        login_attempts=3,
        password_time_cost=1,
        password_memory_kib=64,
        updates_check_seconds=0,
        alerts_check_seconds=0,
        alerts_smtp_host="127.0.0.1",
        alerts_smtp_port=mailbox.port,
        alerts_smtp_security="none",
        alerts_smtp_user="canhbao@bacninh.gov.vn",
        alerts_smtp_password_file=password_file,
        alerts_smtp_from="canhbao@bacninh.gov.vn",
        alerts_timeout_seconds=5,
        alerts_console_url="https://garrison.bacninh.gov.vn",
        alerts_webhook_allow=["127.0.0.0/8"],  # the receiver listens on this machine
    )


# -- helpers ----------------------------------------------------------------------------------------------------


def admin_headers(client: TestClient, username: str = "admin") -> dict[str, str]:
    client.cookies.clear()
    return {"X-CSRF-Token": login(client, username)}


def put_rule(client: TestClient, headers: dict[str, str], unit: int, **body: Any) -> dict[str, Any]:
    body = {"language": "en", **body}
    answer = client.put(f"/api/v1/alerts/rules/{unit}", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    saved: dict[str, Any] = answer.json()
    return saved


def detect(
    database: Database,
    agent_id: str,
    unit_id: int,
    name: str,
    *,
    sha256: str | None = None,
    ago: timedelta = timedelta(),
) -> str:
    detection_id = str(uuid.uuid4())
    with database.session() as session:
        session.add(
            Detection(
                id=detection_id,
                agent_id=agent_id,
                unit_id=unit_id,
                occurred_at=utcnow() - ago,
                received_at=utcnow(),
                path="/home/ketoan/Tải về/hoá đơn.exe",
                name=name,
                kind="virus",
                sha256=sha256 or uuid.uuid4().hex * 2,
                size=1234,
                action="quarantine",
            )
        )
    return detection_id


def run_pass(database: Database, settings: ServerSettings, now: datetime, **extra: Any) -> list[AlertDelivery]:
    with database.session() as session:
        evaluate.evaluate(session, now, **extra)
    return deliver.deliver(database, settings, now)


def records(database: Database, kind: str) -> list[AlertRecord]:
    with database.session() as session:
        query = select(AlertRecord).where(AlertRecord.kind == kind).order_by(AlertRecord.id)
        return list(session.scalars(query))


def soon(minutes: float = 1) -> datetime:
    return utcnow() + timedelta(minutes=minutes)


# -- rules through the API --------------------------------------------------------------------------------------


def test_rules_keep_webhook_urls_secret_and_are_audited(
    client: TestClient, database: Database, settings: ServerSettings, tree: dict[str, int], receiver: Receiver
) -> None:
    headers = admin_headers(client)
    hook = receiver.url + SECRET_PATH + "?token=abc123"
    saved = put_rule(
        client, headers, tree["health"], emails=["AnhTT@syt.bacninh.gov.vn", "ttcntt@bacninh.gov.vn"],
        webhooks=[{"url": hook}], quiet_minutes=30,
    )  # fmt: skip
    assert saved["configured"] is True and saved["quiet_minutes"] == 30
    assert [e["address"] for e in saved["emails"]] == ["anhtt@syt.bacninh.gov.vn", "ttcntt@bacninh.gov.vn"]
    assert saved["webhooks"][0]["address"] == f"http://127.0.0.1:{hook.split(':')[2].split('/')[0]}/…"
    shown = client.get(f"/api/v1/alerts/rules/{tree['health']}").text + client.get("/api/v1/alerts/rules").text
    assert "T0KEN" not in shown and "abc123" not in shown
    with database.session() as session:
        sealed = session.scalars(select(AlertRecipient.secret).where(AlertRecipient.channel == "webhook")).one()
        audit = session.scalars(select(AuditEvent).where(AuditEvent.action.like("alerts.%"))).all()
    assert sealed is not None and b"T0KEN" not in sealed
    assert [a.action for a in audit] == ["alerts.rule_create"]
    assert "T0KEN" not in json.dumps(audit[0].details) and audit[0].unit_id == tree["health"]
    assert (settings.data_dir / "alerts.key").stat().st_mode & 0o777 == 0o600

    # Keeping a webhook by its id keeps it; leaving an address out removes it.
    kept = put_rule(
        client, headers, tree["health"], emails=["ttcntt@bacninh.gov.vn"], webhooks=[{"id": saved["webhooks"][0]["id"]}]
    )
    assert [w["id"] for w in kept["webhooks"]] == [saved["webhooks"][0]["id"]]
    assert [e["address"] for e in kept["emails"]] == ["ttcntt@bacninh.gov.vn"]

    # A unit without a rule of its own says so, and which rules watch it.
    below = client.get(f"/api/v1/alerts/rules/{tree['hospital']}").json()
    assert below["configured"] is False and below["applies"] == [{"unit_id": tree["health"], "unit_name": "Sở Y tế"}]
    assert below["outdated_days"] == 7

    for bad in (
        {"emails": ["không phải địa chỉ"]},
        {"webhooks": [{"url": "ftp://example.org/x"}]},
        {"kinds": ["nope"]},
    ):
        answer = client.put(f"/api/v1/alerts/rules/{tree['health']}", json=bad, headers=headers)
        assert answer.status_code in (400, 422), answer.text
        assert "T0KEN" not in answer.text
    assert client.delete(f"/api/v1/alerts/rules/{tree['health']}", headers=headers).status_code == 204
    assert client.get(f"/api/v1/alerts/rules/{tree['health']}").json()["configured"] is False


def test_unit_admins_edit_their_subtree_and_auditors_read(
    client: TestClient, database: Database, tree: dict[str, int]
) -> None:
    headers = admin_headers(client)
    put_rule(client, headers, tree["province"], emails=["tinh@bacninh.gov.vn"])
    unit_admin = admin_headers(client, "yte.admin")
    put_rule(client, unit_admin, tree["hospital"], emails=["bv@bacninh.gov.vn"])
    for unit in ("education", "province"):
        answer = client.put(f"/api/v1/alerts/rules/{tree[unit]}", json={}, headers=unit_admin)
        assert answer.status_code == 404, answer.text
        assert client.get(f"/api/v1/alerts/rules/{tree[unit]}").status_code == 404
    assert [r["unit_id"] for r in client.get("/api/v1/alerts/rules").json()] == [tree["hospital"]]
    # The province's rule watches the hospital too, but a unit administrator is not told about rules above them.
    assert client.get(f"/api/v1/alerts/rules/{tree['hospital']}").json()["applies"] == [
        {"unit_id": tree["hospital"], "unit_name": "Bệnh viện"}
    ]

    auditor = admin_headers(client, "yte.audit")
    assert client.get(f"/api/v1/alerts/rules/{tree['hospital']}").json()["configured"] is True
    assert client.put(f"/api/v1/alerts/rules/{tree['health']}", json={}, headers=auditor).status_code == 403
    assert client.post(f"/api/v1/alerts/rules/{tree['hospital']}/test", headers=auditor).status_code == 403
    assert client.delete(f"/api/v1/alerts/rules/{tree['hospital']}", headers=auditor).status_code == 403

    # History: only the rules in scope.
    agent = add_agent(database, tree["hospital"], "bv-ketoan-01")
    detect(database, agent, tree["hospital"], "Win.Trojan.Agent-1")
    with database.session() as session:
        evaluate.evaluate(session, soon(), reminders=False)
    assert {r["rule_id"] for r in client.get("/api/v1/alerts/records").json()} == {_rule_id(database, tree["hospital"])}
    assert client.get(f"/api/v1/alerts/records?unit_id={tree['province']}").status_code == 404
    admin_headers(client)
    assert len(client.get("/api/v1/alerts/records?kind=new_detection").json()) == 2  # the province's and the hospital's


def _rule_id(database: Database, unit_id: int) -> int:
    with database.session() as session:
        return session.scalars(select(AlertRule.id).where(AlertRule.unit_id == unit_id)).one()


# -- new detections: digest and quiet interval --------------------------------------------------------------------


def test_new_detections_are_grouped_into_one_message_per_interval(
    client: TestClient, database: Database, settings: ServerSettings, tree: dict[str, int], mailbox: Mailbox,
    receiver: Receiver,
) -> None:  # fmt: skip
    headers = admin_headers(client)
    put_rule(
        client, headers, tree["health"], kinds=["new_detection"], quiet_minutes=15,
        emails=["ttcntt@syt.bacninh.gov.vn"], webhooks=[{"url": receiver.url + SECRET_PATH}],
    )  # fmt: skip
    ketoan = add_agent(database, tree["hospital"], "bv-ketoan-01")
    vanthu = add_agent(database, tree["health"], "syt-vanthu")
    school = add_agent(database, tree["education"], "sgd-server")
    for _ in range(3):
        detect(database, ketoan, tree["hospital"], "Win.Trojan.Agent-1")
    detect(database, vanthu, tree["health"], "Doc.Dropper.Emotet")
    detect(database, school, tree["education"], "Win.Worm.Conficker")  # outside the rule's subtree

    first = soon()
    sent = run_pass(database, settings, first)
    assert [d.ok for d in sent] == [True, True]
    [mail] = mailbox.to("ttcntt@syt.bacninh.gov.vn")
    assert mail["Subject"] == "Garrison – Sở Y tế: 4 new malware detections on 2 computers"
    text = mail.get_content()
    assert "bv-ketoan-01: Win.Trojan.Agent-1 (3 times)" in text and "syt-vanthu: Doc.Dropper.Emotet (1 times)" in text
    assert "https://garrison.bacninh.gov.vn/detections/" in text and "sgd-server" not in text
    assert mailbox.logins == ["canhbao@bacninh.gov.vn"]
    [payload] = receiver.at(SECRET_PATH)
    assert payload["schema"] == "garrison.alerts/1" and payload["unit"] == {"id": tree["health"], "name": "Sở Y tế"}
    assert payload["summary"] == {"new_detection": {"alerts": 2, "detections": 4, "computers": 2}}
    assert {a["details"]["hostname"] for a in payload["alerts"]} == {"bv-ketoan-01", "syt-vanthu"}

    # Within the quiet interval: recorded, not sent.
    detect(database, vanthu, tree["health"], "Doc.Dropper.Emotet")
    detect(database, ketoan, tree["hospital"], "Win.Exploit.CVE_2017_11882")
    assert run_pass(database, settings, first + timedelta(minutes=5)) == []
    assert len(records(database, "new_detection")) == 4
    assert len(mailbox.messages) == 1 and len(receiver.posts) == 1

    # After it: one message with what was held, and nothing twice.
    later = first + timedelta(minutes=16)
    assert [d.ok for d in run_pass(database, settings, later)] == [True, True]
    second = mailbox.to("ttcntt@syt.bacninh.gov.vn")[1]
    assert second["Subject"] == "Garrison – Sở Y tế: 2 new malware detections on 2 computers"
    assert "Win.Trojan.Agent-1" not in second.get_content()
    assert receiver.at(SECRET_PATH)[1]["summary"]["new_detection"]["detections"] == 2
    assert run_pass(database, settings, later + timedelta(minutes=30)) == []
    assert len(records(database, "new_detection")) == 4


def test_vietnamese_is_the_default_language(
    client: TestClient, database: Database, settings: ServerSettings, tree: dict[str, int], mailbox: Mailbox
) -> None:
    headers = admin_headers(client)
    answer = client.put(
        f"/api/v1/alerts/rules/{tree['health']}",
        json={"kinds": ["new_detection"], "emails": ["ttcntt@syt.bacninh.gov.vn"]},
        headers=headers,
    )
    assert answer.json()["language"] == "vi"
    agent = add_agent(database, tree["hospital"], "bv-ketoan-01")
    detect(database, agent, tree["hospital"], "Win.Trojan.Agent-1")
    run_pass(database, settings, soon())
    [mail] = mailbox.messages
    assert mail["Subject"] == "Garrison – Sở Y tế: 1 phát hiện mã độc mới trên 1 máy"
    assert "bv-ketoan-01: Win.Trojan.Agent-1 (1 lần)" in mail.get_content()


def test_a_failing_recipient_is_retried_and_does_not_block_another(
    client: TestClient, database: Database, settings: ServerSettings, tree: dict[str, int], receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    headers = admin_headers(client)
    down = SECRET_PATH + "-down"
    put_rule(
        client, headers, tree["health"], kinds=["new_detection"], quiet_minutes=15,
        webhooks=[{"url": receiver.url + "/ok"}, {"url": receiver.url + down}],
    )  # fmt: skip
    receiver.statuses[down] = 503
    agent = add_agent(database, tree["hospital"], "bv-ketoan-01")
    detect(database, agent, tree["hospital"], "Win.Trojan.Agent-1")

    first = soon()
    outcome = run_pass(database, settings, first)
    assert [(d.target.endswith("/…"), d.ok) for d in outcome] == [(True, True), (True, False)]
    assert outcome[1].error == "OSError: the webhook answered HTTP 503"
    # The next pass tries again (a failure does not start the quiet interval); the other one has nothing new.
    again = run_pass(database, settings, first + timedelta(minutes=1))
    assert [(d.recipient_id, d.ok) for d in again] == [(outcome[1].recipient_id, False)]
    detect(database, agent, tree["hospital"], "Doc.Dropper.Emotet")
    receiver.statuses[down] = 200
    recovered = run_pass(database, settings, first + timedelta(minutes=3))
    assert [(d.recipient_id, d.ok, d.records) for d in recovered] == [(outcome[1].recipient_id, True, 2)]
    [late] = receiver.at(down)
    assert late["summary"]["new_detection"]["detections"] == 2  # what failed, and what came since
    assert len(receiver.at("/ok")) == 1

    history = client.get(f"/api/v1/alerts/deliveries?unit_id={tree['health']}").json()
    assert [d["ok"] for d in history] == [True, False, False, True]
    # The webhook's credential is nowhere: not in the logs, not in the history.
    assert "T0KEN" not in caplog.text and "T0KEN" not in json.dumps(history)
    assert "HTTP 503" in caplog.text
    assert SMTP_PASSWORD not in caplog.text


def test_an_unreachable_mail_server_is_recorded_and_retried(
    client: TestClient, database: Database, tree: dict[str, int], tmp_path: Path, receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    headers = admin_headers(client)
    put_rule(
        client, headers, tree["health"], kinds=["new_detection"],
        emails=["ttcntt@syt.bacninh.gov.vn"], webhooks=[{"url": receiver.url + SECRET_PATH}],
    )  # fmt: skip
    agent = add_agent(database, tree["hospital"], "bv-ketoan-01")
    detect(database, agent, tree["hospital"], "Win.Trojan.Agent-1")
    closed = ServerSettings(
        data_dir=tmp_path, alerts_smtp_host="127.0.0.1", alerts_smtp_port=_free_port(), alerts_smtp_security="none",
        alerts_smtp_from="canhbao@bacninh.gov.vn", alerts_smtp_user="canhbao", alerts_smtp_password=SMTP_PASSWORD,
        alerts_timeout_seconds=5, alerts_webhook_allow=["127.0.0.0/8"],
    )  # fmt: skip
    outcome = run_pass(database, closed, soon())
    assert [(d.channel, d.ok) for d in outcome] == [("email", False), ("webhook", True)]
    assert "ConnectionRefusedError" in outcome[0].error
    assert SMTP_PASSWORD not in caplog.text and "T0KEN" not in caplog.text


# -- outbreaks ----------------------------------------------------------------------------------------------------


def test_outbreak_by_name_or_hash_within_the_window_and_the_subtree(
    client: TestClient, database: Database, tree: dict[str, int]
) -> None:
    headers = admin_headers(client)
    put_rule(client, headers, tree["health"], kinds=["outbreak"], outbreak_computers=3, outbreak_minutes=60)
    put_rule(client, headers, tree["education"], kinds=["outbreak"], outbreak_computers=2, outbreak_minutes=60)
    hosts = [add_agent(database, tree["hospital"], f"bv-may-{n:02}") for n in range(4)]
    school = add_agent(database, tree["education"], "sgd-server")
    for n, agent in enumerate(hosts[:3]):
        detect(database, agent, tree["hospital"], "Win.Ransomware.Lockbit", ago=timedelta(minutes=10 * n))
    detect(database, school, tree["education"], "Win.Ransomware.Lockbit")
    # Two computers only: no outbreak; the same file under three names on three computers: an outbreak.
    detect(database, hosts[0], tree["hospital"], "Doc.Dropper.Emotet")
    detect(database, hosts[1], tree["hospital"], "Doc.Dropper.Emotet")
    for n, agent in enumerate(hosts[1:]):
        detect(database, agent, tree["hospital"], f"Heuristics.Packed-{n}", sha256="c" * 64)
    # Too long ago to count.
    detect(database, hosts[3], tree["hospital"], "Doc.Dropper.Emotet", ago=timedelta(hours=3))

    now = soon()
    with database.session() as session:
        evaluate.evaluate(session, now, reminders=False)
    found = {(r.rule_id, r.subject, r.count) for r in records(database, "outbreak")}
    health, education = _rule_id(database, tree["health"]), _rule_id(database, tree["education"])
    assert found == {(health, "Win.Ransomware.Lockbit", 3), (health, f"SHA-256 {'c' * 64}", 3)}
    lockbit = next(r for r in records(database, "outbreak") if r.subject == "Win.Ransomware.Lockbit")
    assert lockbit.details["hosts"] == ["bv-may-00", "bv-may-01", "bv-may-02"] and lockbit.active
    assert education not in {r.rule_id for r in records(database, "outbreak")}  # one computer there

    # Still going a few minutes later: not raised again, kept up to date.
    detect(database, hosts[3], tree["hospital"], "Win.Ransomware.Lockbit")
    with database.session() as session:
        assert evaluate.evaluate(session, now + timedelta(minutes=5), reminders=False) == 0
    assert {r.count for r in records(database, "outbreak") if r.subject == "Win.Ransomware.Lockbit"} == {4}
    # Over when the window has passed; a new wave is a new outbreak.
    with database.session() as session:
        evaluate.evaluate(session, now + timedelta(hours=2), reminders=False)
    assert not any(r.active for r in records(database, "outbreak"))
    for agent in hosts[:3]:
        detect(database, agent, tree["hospital"], "Win.Ransomware.Lockbit", ago=timedelta(minutes=-120))
    with database.session() as session:
        assert evaluate.evaluate(session, now + timedelta(hours=2, minutes=5), reminders=False) == 1


# -- conditions on computers ---------------------------------------------------------------------------------------


def _set_agent(database: Database, agent_id: str, **values: Any) -> None:
    with database.session() as session:
        agent = session.get(Agent, agent_id)
        assert agent is not None
        for name, value in values.items():
            setattr(agent, name, value)


def test_offline_fires_once_and_again_only_after_recovery(
    client: TestClient, database: Database, settings: ServerSettings, tree: dict[str, int], receiver: Receiver
) -> None:
    headers = admin_headers(client)
    put_rule(
        client, headers, tree["health"], kinds=["offline"], offline_hours=24, quiet_minutes=1,
        webhooks=[{"url": receiver.url + "/hook"}],
    )  # fmt: skip
    gone = add_agent(database, tree["hospital"], "bv-kho", seen_ago=timedelta(hours=30))
    add_agent(database, tree["hospital"], "bv-ketoan-01", seen_ago=timedelta(hours=2))
    add_agent(database, tree["education"], "sgd-server", seen_ago=timedelta(hours=48))  # outside
    add_agent(database, tree["hospital"], "bv-cu", seen_ago=timedelta(days=5), revoked=True)

    now = soon()
    run_pass(database, settings, now)
    assert [(r.subject, r.active) for r in records(database, "offline")] == [("bv-kho", True)]
    [message] = receiver.at("/hook")
    assert message["title"] == "Garrison – Sở Y tế: 1 computers not heard from for more than 24 hours"
    assert message["alerts"][0]["link"] == f"https://garrison.bacninh.gov.vn/agents/{gone}"
    run_pass(database, settings, now + timedelta(hours=1))
    assert len(records(database, "offline")) == 1 and len(receiver.posts) == 1

    _set_agent(database, gone, last_seen_at=now + timedelta(hours=1, minutes=30))
    run_pass(database, settings, now + timedelta(hours=2))
    assert [(r.active, r.cleared_at is not None) for r in records(database, "offline")] == [(False, True)]
    assert len(receiver.posts) == 1  # recovering is not news by itself

    run_pass(database, settings, now + timedelta(hours=30))
    assert [r.active for r in records(database, "offline") if r.subject == "bv-kho"] == [False, True]
    assert len(receiver.posts) == 2


def test_outdated_signatures_and_update_problems(
    client: TestClient, database: Database, settings: ServerSettings, tree: dict[str, int], receiver: Receiver
) -> None:
    headers = admin_headers(client)
    put_rule(
        client,
        headers,
        tree["province"],
        kinds=["outdated", "update_failing"],
        webhooks=[{"url": receiver.url + "/tinh"}],
    )
    put_rule(client, headers, tree["health"], kinds=["outdated", "update_failing"], outdated_days=14)
    add_agent(database, tree["hospital"], "bv-ketoan-01", signatures_age=timedelta(days=10))
    add_agent(database, tree["hospital"], "bv-moi", signatures_age=timedelta(days=1))
    add_agent(database, tree["hospital"], "bv-vua-cai", signatures_age=None)  # enrolled now, no heartbeat yet
    broken = add_agent(database, tree["education"], "sgd-server")
    _set_agent(database, broken, update_error="the signature release failed verification", update_error_at=utcnow())
    notice = Notice("feed_stale", "no new signatures for more than 7 days: check the signature sources")

    now = soon()
    run_pass(database, settings, now, server_notices=[notice], reminders=False)
    province, health = _rule_id(database, tree["province"]), _rule_id(database, tree["health"])
    assert [(r.rule_id, r.subject) for r in records(database, "outdated")] == [(province, "bv-ketoan-01")]
    failing = {(r.rule_id, r.subject) for r in records(database, "update_failing")}
    assert failing == {(province, "sgd-server"), (province, notice.message)}  # the health rule sees neither
    [message] = receiver.at("/tinh")
    assert message["summary"] == {"outdated": {"alerts": 1}, "update_failing": {"alerts": 2}}
    assert (
        "Server: no new signatures" in message["text"] and "sgd-server: the signature release failed" in message["text"]
    )
    assert health not in {r.rule_id for r in records(database, "update_failing")}

    # Fixed: cleared; the same notice still there: not raised again.
    _set_agent(database, broken, update_error="", update_error_at=None)
    with database.session() as session:
        assert evaluate.evaluate(session, now + timedelta(minutes=5), server_notices=[notice], reminders=False) == 0
    assert {(r.subject, r.active) for r in records(database, "update_failing")} == {
        ("sgd-server", False), (notice.message, True)
    }  # fmt: skip


def test_reporting_deadline_reminders_once_per_reminder_day(
    client: TestClient, database: Database, tree: dict[str, int]
) -> None:
    headers = admin_headers(client)
    put_rule(client, headers, tree["health"], kinds=["deadline"])
    # 13 December, 10:00 in Vietnam: 7 days before the regulation's deadline (20 December), a reminder day.
    now = datetime(2026, 12, 13, 3, 0, tzinfo=UTC)
    with database.session() as session:
        for rule in session.scalars(select(AlertRule)):
            rule.detections_seen_at = now - timedelta(days=1)
        evaluate.evaluate(session, now)
    found = records(database, "deadline")
    assert sorted(r.subject for r in found) == ["Bệnh viện", "Sở Y tế"]
    assert {r.details["days_left"] for r in found} == {7} and {r.details["quarter"] for r in found} == {4}
    assert digest.evidence(found[0], "") == f"/reporting?unit={found[0].unit_id}&year=2026&quarter=4"
    with database.session() as session:
        assert evaluate.evaluate(session, now + timedelta(hours=3)) == 0
        assert evaluate.evaluate(session, now + timedelta(days=1)) == 0  # 6 days left: not a reminder day
        assert evaluate.evaluate(session, now + timedelta(days=4)) == 2  # 3 days left


# -- a test message ------------------------------------------------------------------------------------------------


def test_send_a_test_message(
    client: TestClient, database: Database, tree: dict[str, int], mailbox: Mailbox, receiver: Receiver
) -> None:
    headers = admin_headers(client, "yte.admin")
    assert client.post(f"/api/v1/alerts/rules/{tree['health']}/test", headers=headers).status_code == 400  # no rule
    put_rule(
        client, headers, tree["health"], emails=["ttcntt@syt.bacninh.gov.vn"],
        webhooks=[{"url": receiver.url + SECRET_PATH}],
    )  # fmt: skip
    answer = client.post(f"/api/v1/alerts/rules/{tree['health']}/test", headers=headers)
    assert answer.status_code == 200, answer.text
    assert [(d["channel"], d["ok"], d["test"]) for d in answer.json()] == [
        ("email", True, True),
        ("webhook", True, True),
    ]
    assert mailbox.messages[0]["Subject"] == "Garrison – Sở Y tế: test message"
    assert receiver.at(SECRET_PATH)[0]["test"] is True
    assert "T0KEN" not in answer.text
    with database.session() as session:
        audit = session.scalars(select(AuditEvent).where(AuditEvent.action == "alerts.test")).one()
        # The test did not count as the recipients' message: the quiet interval has not started.
        assert all(r.last_sent_at is None for r in session.scalars(select(AlertRecipient)))
    assert audit.details == {"sent": 2, "failed": 0} and audit.actor_name == "yte.admin"


def test_the_background_pass_brings_the_servers_update_warnings_and_forgets_old_history(
    client: TestClient, database: Database, settings: ServerSettings, tree: dict[str, int], receiver: Receiver
) -> None:
    headers = admin_headers(client)
    put_rule(client, headers, tree["province"], kinds=["update_failing"], webhooks=[{"url": receiver.url + "/tinh"}])
    put_rule(client, headers, tree["health"], kinds=["update_failing"], webhooks=[{"url": receiver.url + "/syt"}])
    repository = client.app.state.update_repository  # type: ignore[attr-defined]
    now = soon()
    assert service.run(database, settings, repository, now) == 1
    # A new server keeps its root key online: the update channel's warning, to the province's rule only.
    [message] = receiver.at("/tinh")
    assert message["alerts"][0]["details"]["code"] == "root_key_online" and receiver.at("/syt") == []

    later = now + service.KEEP + timedelta(days=1)
    with database.session() as session:
        old = AlertRecord(
            rule_id=_rule_id(database, tree["health"]), unit_id=tree["health"], kind="deadline", dedupe_key="x",
            subject="x", first_seen=now, last_seen=now, raised_at=now - timedelta(days=1),
        )  # fmt: skip
        session.add(old)
    service.run(database, settings, repository, later)
    with database.session() as session:
        assert session.get(AlertRecord, old.id) is None
        assert session.scalars(select(AlertDelivery).where(AlertDelivery.at == now)).all() == []
        kept = session.scalars(select(AlertRecord).where(AlertRecord.dedupe_key == "notice:root_key_online")).all()
        assert [(r.id, r.active) for r in kept] == [
            (message["alerts"][0]["id"], True)
        ]  # still true: kept, so it is not raised again


def test_email_goes_through_starttls_with_a_verified_certificate(
    client: TestClient, database: Database, tree: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_pem, key_pem = tls.make_self_signed(["localhost", "127.0.0.1"])
    (tmp_path / "smtp.crt").write_bytes(cert_pem)
    (tmp_path / "smtp.key").write_bytes(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "smtp.crt", tmp_path / "smtp.key")
    box = Mailbox(_free_port())
    controller = Controller(
        box, hostname="127.0.0.1", port=box.port, tls_context=context, require_starttls=True,
        authenticator=box.authenticate,
    )  # fmt: skip
    controller.start()
    try:
        secure = ServerSettings(
            data_dir=tmp_path, alerts_smtp_host="127.0.0.1", alerts_smtp_port=box.port,
            alerts_smtp_security="starttls", alerts_smtp_user="canhbao", alerts_smtp_password=SMTP_PASSWORD,
            alerts_smtp_from="canhbao@bacninh.gov.vn", alerts_timeout_seconds=5,
        )  # fmt: skip
        put_rule(client, admin_headers(client), tree["health"], kinds=["new_detection"], emails=["a@syt.gov.vn"])
        agent = add_agent(database, tree["hospital"], "bv-ketoan-01")
        detect(database, agent, tree["hospital"], "Win.Trojan.Agent-1")
        now = soon()
        # The server's certificate is not one the system trusts: refused, recorded, retried later.
        [refused] = run_pass(database, secure, now)
        assert not refused.ok and "CERTIFICATE_VERIFY_FAILED" in refused.error and box.messages == []
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "smtp.crt"))  # now it is trusted
        [sent] = run_pass(database, secure, now + timedelta(minutes=1))
        assert sent.ok, sent.error
        assert box.logins == ["canhbao"] and box.messages[0]["To"] == "a@syt.gov.vn"
    finally:
        controller.stop()


def test_a_webhook_whose_key_is_lost_fails_with_the_reason_and_others_still_go(
    client: TestClient, database: Database, settings: ServerSettings, tree: dict[str, int], mailbox: Mailbox,
    receiver: Receiver,
) -> None:  # fmt: skip
    put_rule(
        client, admin_headers(client), tree["health"], kinds=["new_detection"], emails=["a@syt.gov.vn"],
        webhooks=[{"url": receiver.url + SECRET_PATH}],
    )  # fmt: skip
    (settings.data_dir / "alerts.key").unlink()  # a restored backup without the key file, say
    agent = add_agent(database, tree["hospital"], "bv-ketoan-01")
    detect(database, agent, tree["hospital"], "Win.Trojan.Agent-1")
    outcome = run_pass(database, settings, soon())
    assert [(d.channel, d.ok) for d in outcome] == [("email", True), ("webhook", False)]
    assert outcome[1].error == (
        "OSError: the saved address cannot be read: alerts.key is missing or not the one it was saved with"
    )
    assert receiver.posts == [] and len(mailbox.messages) == 1


def test_webhooks_may_not_reach_this_machine_or_its_local_link_unless_allowed(
    client: TestClient, database: Database, settings: ServerSettings, tree: dict[str, int], receiver: Receiver
) -> None:
    # A unit administrator writes webhook addresses: they must not reach services only the server can reach
    # (its own ports, a cloud's metadata service at 169.254.169.254).
    put_rule(
        client, admin_headers(client), tree["health"], kinds=["new_detection"],
        webhooks=[{"url": receiver.url + "/local"}, {"url": "http://169.254.169.254/latest/meta-data/"}],
    )  # fmt: skip
    agent = add_agent(database, tree["hospital"], "bv-ketoan-01")
    detect(database, agent, tree["hospital"], "Win.Trojan.Agent-1")
    strict = settings.model_copy(update={"alerts_webhook_allow": []})
    now = soon()
    outcome = sorted(run_pass(database, strict, now), key=lambda d: d.error)
    assert [d.ok for d in outcome] == [False, False]
    assert "resolves to 127.0.0.1, an address of this machine" in outcome[0].error
    assert "resolves to 169.254.169.254" in outcome[1].error
    assert "GARRISON_ALERTS_WEBHOOK_ALLOW" in outcome[0].error
    assert receiver.posts == []
    # Allowed by the administrator of the server: the local one goes (the other is still refused).
    outcome = run_pass(database, settings, now + timedelta(minutes=1))
    assert sorted(d.ok for d in outcome) == [False, True]
    assert len(receiver.at("/local")) == 1


def test_the_allowed_webhook_networks_must_be_networks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a network"):
        ServerSettings(data_dir=tmp_path, alerts_webhook_allow=["intranet"])
