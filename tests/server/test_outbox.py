"""The national outbox against a real local HTTPS receiver (a thread serving TLS with a certificate made for the
test, trusted through ``national_ca_file``) that checks every document's XML signature against the agency's
certificate and answers as each test tells it: delivered and verified, retried after 5xx, timeouts and refused
connections with backoff, 4xx failing for good then retried by an administrator, a tampered document refused,
one idempotency key across attempts, two workers sending an item once, a dead worker's claim recovered, the
automatic schedule, the configuration checks and the REST endpoints. Time is driven by passing ``now``."""

from __future__ import annotations

import http.server
import random
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from garrison.server.audit.models import AuditEvent
from garrison.server.audit.service import SYSTEM, Actor
from garrison.server.db import Database
from garrison.server.errors import BadRequest, Conflict
from garrison.server.settings import ServerSettings
from garrison.server.sharing import avreport, delivery, outbox, xmlsign
from garrison.server.sharing.models import DeliveryStatus, NationalAttempt, NationalDelivery
from garrison.server.tls import make_self_signed
from tests.server.conftest import login
from tests.server.test_avreport import _certificate

NS = {"e": avreport.NAMESPACE}
NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam
START, END = NOW - timedelta(days=7), NOW - timedelta(hours=1)
ADMIN = Actor(None, "quantri", "127.0.0.1")


# -- the receiver -------------------------------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    document_id: str | None
    problem: str = ""


@dataclass
class Receiver:
    """What the national authority's system would be: it verifies the signature, then answers as told."""

    agency_cert: bytes
    url: str = ""
    ca_file: Path | None = None
    answers: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)  # consumed in order
    default: tuple[int, str, dict[str, str]] = (200, '{"status": "received"}', {})
    hang: bool = False
    released: threading.Event = field(default_factory=threading.Event)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, str, dict[str, str]]:
        try:
            signed = avreport.verify(body, self.agency_cert)
        except xmlsign.SignatureError as error:
            with self.lock:
                self.received.append(Received(headers, body, False, None, str(error)))
            return 400, '{"error": "invalid signature"}', {}
        document_id = signed.findtext("e:edXMLHeader/e:MessageHeader/e:DocumentId", namespaces=NS)
        with self.lock:
            self.received.append(Received(headers, body, True, document_id))
            return self.answers.pop(0) if self.answers else self.default


def _handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if receiver.hang:
                receiver.released.wait(30)  # the client gives up first; the test releases us at its end
                return
            status, text, extra = receiver.handle(dict(self.headers.items()), body)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def material() -> tuple[bytes, bytes]:
    """The agency's signing key and certificate."""
    return _certificate()


@pytest.fixture
def receiver(tmp_path_factory: pytest.TempPathFactory, material: tuple[bytes, bytes]) -> Iterator[Receiver]:
    directory = tmp_path_factory.mktemp("receiver")
    cert_pem, key_pem = make_self_signed(["127.0.0.1", "localhost"])
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    made = Receiver(agency_cert=material[1], ca_file=directory / "cert.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(made))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    made.url = f"https://127.0.0.1:{server.server_address[1]}/AVReport/server.php"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield made
    finally:
        made.released.set()
        server.shutdown()
        server.server_close()


def national_settings(
    tmp_path: Path, material: tuple[bytes, bytes], receiver: Receiver | None, **extra: Any
) -> ServerSettings:
    key_file, cert_file = tmp_path / "agency.key", tmp_path / "agency.crt"
    key_file.write_bytes(material[0])
    cert_file.write_bytes(material[1])
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "login_attempts": 3,
        "password_time_cost": 1,
        "password_memory_kib": 64,
        "updates_check_seconds": 0,
        "national_outbox_seconds": 0,
        "statistics_record_seconds": 0,
        "alerts_check_seconds": 0,
        "national_organ_id": "000.00.00.H35",
        "national_organ_name": "Sở Khoa học và Công nghệ tỉnh Quảng Ngãi",
        "national_key_file": key_file,
        "national_cert_file": cert_file,
        "national_timeout_seconds": 5,
        "national_max_attempts": 4,
        "national_send_hours": 0,
    }
    if receiver is not None:
        values |= {"national_endpoint_url": receiver.url, "national_ca_file": receiver.ca_file}
    return ServerSettings(**(values | extra))


@pytest.fixture
def settings(tmp_path: Path, material: tuple[bytes, bytes], receiver: Receiver) -> ServerSettings:
    return national_settings(tmp_path, material, receiver)


def _queue(database: Database, settings: ServerSettings, **extra: Any) -> int:
    with database.session() as session:
        item = outbox.queue(session, settings, ADMIN, start=START, end=END, now=NOW, **extra)
        return item.id


def _item(database: Database, delivery_id: int) -> NationalDelivery:
    with database.session() as session:
        item = outbox.get(session, delivery_id)
        session.expunge(item)
        return item


def answered(item: NationalDelivery) -> datetime:
    """When the last attempt got its answer: the backoff and Retry-After count from there."""
    last = item.attempt_rows[-1]
    return outbox.as_utc(last.started_at) + timedelta(milliseconds=last.duration_ms)


def _rng() -> random.Random:
    return random.Random(5)


# -- delivering ---------------------------------------------------------------------------------------------------


def test_a_report_is_delivered_signed_and_verified(
    database: Database, settings: ServerSettings, receiver: Receiver
) -> None:
    delivery_id = _queue(database, settings)
    queued = _item(database, delivery_id)
    assert queued.status is DeliveryStatus.QUEUED and queued.attempts == 0

    assert outbox.send_due(database, settings, NOW, rng=_rng()) == [DeliveryStatus.DELIVERED]

    (got,) = receiver.received
    assert got.verified, got.problem
    assert got.body == queued.document  # the bytes stored when it was made
    assert got.headers["Content-Type"] == "application/xml"
    assert got.headers["Idempotency-Key"] == queued.message_id == got.document_id
    item = _item(database, delivery_id)
    assert item.status is DeliveryStatus.DELIVERED
    assert item.delivered_at is not None and item.next_attempt_at is None
    (attempt,) = item.attempt_rows
    assert (attempt.number, attempt.http_status, attempt.outcome) == (1, 200, "delivered")
    assert attempt.answer == '{"status": "received"}'
    # Nothing is due any more.
    assert outbox.send_due(database, settings, NOW + timedelta(days=1), rng=_rng()) == []
    assert len(receiver.received) == 1
    with database.session() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "sharing.outbox_queue")).one()
        assert event.details["message_id"] == queued.message_id
        assert event.actor_name == "quantri"


def test_a_receiver_down_then_up_gets_it_after_backoff_with_the_same_key(
    database: Database, settings: ServerSettings, receiver: Receiver
) -> None:
    receiver.answers = [(500, "database unavailable", {}), (502, "bad gateway", {})]
    delivery_id = _queue(database, settings)

    assert outbox.send_due(database, settings, NOW, rng=_rng()) == [DeliveryStatus.QUEUED]
    first = _item(database, delivery_id)
    assert first.next_attempt_at is not None
    wait = outbox.as_utc(first.next_attempt_at) - answered(first)
    assert timedelta(seconds=48) <= wait <= timedelta(seconds=72)  # one minute ±20 %
    assert "HTTP 500" in first.last_error
    # Not due yet: nothing is sent.
    assert outbox.send_due(database, settings, NOW + timedelta(seconds=30), rng=_rng()) == []
    assert len(receiver.received) == 1

    later = outbox.as_utc(first.next_attempt_at)
    assert outbox.send_due(database, settings, later, rng=_rng()) == [DeliveryStatus.QUEUED]
    second = _item(database, delivery_id)
    assert second.next_attempt_at is not None
    second_wait = outbox.as_utc(second.next_attempt_at) - answered(second)
    assert timedelta(seconds=96) <= second_wait <= timedelta(seconds=144)  # doubled

    again = outbox.as_utc(second.next_attempt_at)
    assert outbox.send_due(database, settings, again, rng=_rng()) == [DeliveryStatus.DELIVERED]
    item = _item(database, delivery_id)
    assert item.status is DeliveryStatus.DELIVERED and item.attempts == 3
    assert [(a.number, a.http_status, a.outcome) for a in item.attempt_rows] == [
        (1, 500, "retry"),
        (2, 502, "retry"),
        (3, 200, "delivered"),
    ]
    assert item.attempt_rows[0].answer == "database unavailable"
    keys = {r.headers["Idempotency-Key"] for r in receiver.received}
    assert keys == {item.message_id}
    assert len({r.body for r in receiver.received}) == 1


def test_a_refused_connection_and_a_timeout_are_retried(
    database: Database, tmp_path: Path, material: tuple[bytes, bytes], receiver: Receiver
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = national_settings(tmp_path, material, receiver, national_endpoint_url=f"https://127.0.0.1:{port}/x")
    delivery_id = _queue(database, down)
    assert outbox.send_due(database, down, NOW, rng=_rng()) == [DeliveryStatus.QUEUED]
    item = _item(database, delivery_id)
    (attempt,) = item.attempt_rows
    assert attempt.http_status is None and attempt.outcome == "retry" and attempt.error

    receiver.hang = True
    slow = national_settings(tmp_path, material, receiver, national_timeout_seconds=0.5)
    assert item.next_attempt_at is not None
    assert outbox.send_due(database, slow, outbox.as_utc(item.next_attempt_at), rng=_rng()) == [DeliveryStatus.QUEUED]
    item = _item(database, delivery_id)
    assert item.attempt_rows[-1].error.startswith("no answer within 0.5 s")
    assert item.attempts == 2


def test_retry_after_is_honoured_for_429_and_503(
    database: Database, settings: ServerSettings, receiver: Receiver
) -> None:
    receiver.answers = [(429, "slow down", {"Retry-After": "900"}), (503, "maintenance", {"Retry-After": "7200"})]
    delivery_id = _queue(database, settings)
    outbox.send_due(database, settings, NOW, rng=_rng())
    item = _item(database, delivery_id)
    assert outbox.as_utc(item.next_attempt_at or NOW) == answered(item) + timedelta(seconds=900)
    outbox.send_due(database, settings, answered(item) + timedelta(seconds=900), rng=_rng())
    item = _item(database, delivery_id)
    assert outbox.as_utc(item.next_attempt_at or NOW) == answered(item) + timedelta(seconds=7200)
    assert item.status is DeliveryStatus.QUEUED
    assert [a.http_status for a in item.attempt_rows] == [429, 503]


def test_out_of_attempts_fails_then_an_administrator_retries(
    database: Database, settings: ServerSettings, receiver: Receiver
) -> None:
    receiver.default = (500, "down", {})
    delivery_id = _queue(database, settings)
    moment = NOW
    for _ in range(settings.national_max_attempts):
        outbox.send_due(database, settings, moment, rng=_rng())
        item = _item(database, delivery_id)
        moment = outbox.as_utc(item.next_attempt_at) if item.next_attempt_at else moment
    assert item.status is DeliveryStatus.FAILED
    assert item.attempts == settings.national_max_attempts
    assert "gave up after 4 attempts" in item.last_error
    assert outbox.send_due(database, settings, moment + timedelta(days=2), rng=_rng()) == []

    receiver.default = (200, "ok", {})
    with database.session() as session:
        outbox.retry(session, ADMIN, delivery_id, now=moment)
    assert outbox.send_due(database, settings, moment, rng=_rng()) == [DeliveryStatus.DELIVERED]
    item = _item(database, delivery_id)
    assert item.status is DeliveryStatus.DELIVERED and item.attempts == 5
    assert {r.headers["Idempotency-Key"] for r in receiver.received} == {item.message_id}


def test_a_4xx_answer_fails_for_good_and_a_retry_delivers(
    database: Database, settings: ServerSettings, receiver: Receiver
) -> None:
    receiver.answers = [(422, '{"error": "unknown OrganId"}', {})]
    delivery_id = _queue(database, settings)
    assert outbox.send_due(database, settings, NOW, rng=_rng()) == [DeliveryStatus.FAILED]
    item = _item(database, delivery_id)
    assert item.next_attempt_at is None
    assert item.last_error == "HTTP 422: the receiver refused the document"
    assert item.attempt_rows[0].answer == '{"error": "unknown OrganId"}'
    with database.session() as session:
        assert outbox.retry(session, ADMIN, delivery_id, now=NOW).status is DeliveryStatus.QUEUED
    with database.session() as session:  # a waiting report may be pushed again…
        outbox.retry(session, ADMIN, delivery_id, now=NOW)
    assert outbox.send_due(database, settings, NOW, rng=_rng()) == [DeliveryStatus.DELIVERED]
    with database.session() as session, pytest.raises(Conflict, match="delivered"):
        outbox.retry(session, ADMIN, delivery_id, now=NOW)  # …a delivered one not
    item = _item(database, delivery_id)
    assert item.status is DeliveryStatus.DELIVERED
    assert [a.http_status for a in item.attempt_rows] == [422, 200]
    assert {r.headers["Idempotency-Key"] for r in receiver.received} == {item.message_id}


def test_408_is_retried_and_a_redirect_is_not_followed(
    database: Database, settings: ServerSettings, receiver: Receiver
) -> None:
    receiver.answers = [(408, "", {}), (301, "", {"Location": "https://elsewhere.example/"})]
    delivery_id = _queue(database, settings)
    assert outbox.send_due(database, settings, NOW, rng=_rng()) == [DeliveryStatus.QUEUED]
    item = _item(database, delivery_id)
    assert outbox.send_due(database, settings, outbox.as_utc(item.next_attempt_at or NOW), rng=_rng()) == [
        DeliveryStatus.FAILED
    ]
    assert "redirects to https://elsewhere.example/" in _item(database, delivery_id).last_error


def test_a_tampered_document_is_refused_by_the_receiver(
    database: Database, settings: ServerSettings, receiver: Receiver
) -> None:
    delivery_id = _queue(database, settings)
    with database.session() as session:
        item = session.get(NationalDelivery, delivery_id)
        assert item is not None
        assert b"000.00.00.H35" in item.document
        item.document = item.document.replace(b"000.00.00.H35", b"000.00.00.H99")
    assert outbox.send_due(database, settings, NOW, rng=_rng()) == [DeliveryStatus.FAILED]
    (got,) = receiver.received
    assert not got.verified and "signature" in got.problem
    assert _item(database, delivery_id).attempt_rows[0].http_status == 400


# -- concurrency and crashes ----------------------------------------------------------------------------------------


def test_two_workers_claiming_at_once_send_each_item_once(
    fresh_engine: Engine, settings: ServerSettings, receiver: Receiver
) -> None:
    database = Database(fresh_engine)
    ids = [_queue(database, settings) for _ in range(3)]
    start = threading.Barrier(4)
    failures: list[BaseException] = []
    results: list[DeliveryStatus | None] = []

    def work() -> None:
        start.wait()
        try:
            results.extend(outbox.send_due(database, settings, NOW, rng=_rng()))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(r.headers["Idempotency-Key"] for r in receiver.received) == sorted(
        _item(database, i).message_id for i in ids
    )
    assert results == [DeliveryStatus.DELIVERED] * 3
    with database.session() as session:
        assert len(session.scalars(select(NationalAttempt)).all()) == 3


def test_a_dead_workers_claim_is_recovered_and_the_item_sent_again(
    database: Database, settings: ServerSettings, receiver: Receiver
) -> None:
    delivery_id = _queue(database, settings)
    (held,) = outbox.claim(database, NOW)  # this worker dies here, before sending
    assert _item(database, delivery_id).status is DeliveryStatus.SENDING
    assert outbox.claim(database, NOW) == []  # nobody else takes it meanwhile
    assert outbox.recover(database, settings, NOW + timedelta(minutes=1)) == 0  # still within its time

    later = NOW + outbox.stale_after(settings) + timedelta(seconds=1)
    assert outbox.recover(database, settings, later) == 1
    item = _item(database, delivery_id)
    assert item.status is DeliveryStatus.QUEUED
    assert [(a.number, a.outcome) for a in item.attempt_rows] == [(1, "lost")]

    assert outbox.send_due(database, settings, later, rng=_rng()) == [DeliveryStatus.DELIVERED]
    assert receiver.received[0].headers["Idempotency-Key"] == held.message_id
    # The dead worker wakes up late with an error: its claim is gone, the delivery stands.
    late = delivery.Answer(500, "late", duration_ms=1)
    assert outbox.finish(database, settings, held, late, NOW, later, _rng()) is None
    item = _item(database, delivery_id)
    assert item.status is DeliveryStatus.DELIVERED and item.attempts == 2
    assert [a.outcome for a in item.attempt_rows] == ["lost", "delivered", "retry"]


def test_a_claim_recovered_with_no_attempts_left_fails(
    database: Database, tmp_path: Path, material: tuple[bytes, bytes], receiver: Receiver
) -> None:
    once = national_settings(tmp_path, material, receiver, national_max_attempts=1)
    delivery_id = _queue(database, once)
    outbox.claim(database, NOW)
    assert outbox.recover(database, once, NOW + outbox.stale_after(once) + timedelta(seconds=1)) == 1
    assert _item(database, delivery_id).status is DeliveryStatus.FAILED
    assert receiver.received == []


# -- the schedule and the configuration ------------------------------------------------------------------------------


def test_automatic_reports_cover_time_without_gaps(
    database: Database, tmp_path: Path, material: tuple[bytes, bytes], receiver: Receiver
) -> None:
    daily = national_settings(tmp_path, material, receiver, national_send_hours=24)
    first = outbox.queue_due(database, daily, NOW)
    assert first is not None and first.automatic
    vietnam_midnight = datetime(2026, 11, 19, 17, 0, tzinfo=UTC)  # 20/11 00:00 in Vietnam
    assert (outbox.as_utc(first.period_start), outbox.as_utc(first.period_end)) == (
        vietnam_midnight - timedelta(days=1),
        vietnam_midnight,
    )
    assert outbox.queue_due(database, daily, NOW + timedelta(hours=12)) is None  # the day is not over
    # The server was off for three days: one report covers them all, from where the last one ended.
    gap = outbox.queue_due(database, daily, NOW + timedelta(days=3))
    assert gap is not None
    assert (outbox.as_utc(gap.period_start), outbox.as_utc(gap.period_end)) == (
        vietnam_midnight,
        vietnam_midnight + timedelta(days=3),
    )
    with database.session() as session:
        assert session.scalar(select(AuditEvent.actor_name).where(AuditEvent.target_id == str(gap.id))) == "system"
    never = national_settings(tmp_path, material, receiver, national_send_hours=0)
    assert outbox.queue_due(database, never, NOW + timedelta(days=10)) is None


def test_the_same_automatic_period_is_queued_once(
    database: Database, settings: ServerSettings, receiver: Receiver
) -> None:
    key = "auto:2026-11-19T17:00:00+00:00"
    _queue(database, settings, schedule_key=key)
    with database.session() as session, pytest.raises(IntegrityError), session.begin_nested():
        outbox.queue(session, settings, SYSTEM, start=START, end=END, now=NOW, schedule_key=key)


def test_queueing_needs_the_endpoint_the_codes_and_the_key(
    database: Database, tmp_path: Path, material: tuple[bytes, bytes], receiver: Receiver
) -> None:
    without = national_settings(tmp_path, material, None)
    with database.session() as session, pytest.raises(Conflict, match="GARRISON_NATIONAL_ENDPOINT_URL"):
        outbox.queue(session, without, ADMIN, start=START, end=END, now=NOW)
    no_key = national_settings(tmp_path, material, receiver, national_key_file=None)
    with database.session() as session, pytest.raises(Conflict, match="GARRISON_NATIONAL_KEY_FILE"):
        outbox.queue(session, no_key, ADMIN, start=START, end=END, now=NOW)
    no_code = national_settings(tmp_path, material, receiver, national_organ_id="")
    with database.session() as session, pytest.raises(Conflict, match="GARRISON_NATIONAL_ORGAN_ID"):
        outbox.queue(session, no_code, ADMIN, start=START, end=END, now=NOW)
    assert outbox.queue_due(database, no_key, NOW) is None  # the loop logs it and goes on
    assert outbox.send_due(database, without, NOW) == []
    good = national_settings(tmp_path, material, receiver)
    with database.session() as session:
        with pytest.raises(BadRequest, match="end after it starts"):
            outbox.queue(session, good, ADMIN, start=END, end=START, now=NOW)
        with pytest.raises(BadRequest, match="must be over"):
            outbox.queue(session, good, ADMIN, start=START, end=NOW + timedelta(hours=1), now=NOW)
        assert session.scalars(select(NationalDelivery)).all() == []


def test_the_endpoint_must_be_https() -> None:
    assert ServerSettings(national_endpoint_url=" https://mis.ais.gov.vn/AVReport/server.php ").national_endpoint_url
    for url in ("http://mis.ais.gov.vn/AVReport", "ftp://mis.ais.gov.vn/", "https://user:pw@host/", "https:///x"):
        with pytest.raises(ValidationError, match="national_endpoint_url"):
            ServerSettings(national_endpoint_url=url)
    with pytest.raises(ValidationError):
        ServerSettings(national_endpoint_url="http://127.0.0.1:9000/")  # http needs the flag…
    with pytest.raises(ValidationError):
        ServerSettings(national_endpoint_url="http://10.0.0.5/", national_allow_http=True)  # …and this machine
    local = ServerSettings(national_endpoint_url="http://localhost:9000/", national_allow_http=True)
    assert local.national_endpoint_url == "http://localhost:9000/"


def test_retry_after_and_backoff() -> None:
    assert delivery.retry_after("120", NOW) == timedelta(seconds=120)
    assert delivery.retry_after("Fri, 20 Nov 2026 03:10:00 GMT", NOW) == timedelta(minutes=10)
    assert delivery.retry_after("Fri, 20 Nov 2026 02:00:00 GMT", NOW) == timedelta(0)
    assert delivery.retry_after("99999999", NOW) == delivery.MAX_RETRY_AFTER
    assert delivery.retry_after("soon", NOW) is None
    still = random.Random(1)
    waits = [delivery.backoff(n, still) for n in range(1, 16)]
    assert all(timedelta(minutes=0.8 * 2 ** (n - 1)) <= w for n, w in enumerate(waits[:9], start=1))
    assert all(w <= timedelta(hours=6) * 1.2 for w in waits)
    assert min(waits[10:]) >= timedelta(hours=6) * 0.8


# -- the REST endpoints ------------------------------------------------------------------------------------------------


def test_outbox_endpoints(
    client: TestClient, tree: dict[str, int], database: Database, settings: ServerSettings, receiver: Receiver
) -> None:
    headers = {"X-CSRF-Token": login(client)}
    period = {"start": START.isoformat(), "end": END.isoformat()}
    answer = client.post("/api/v1/sharing/outbox", json=period, headers=headers)
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["status"] == "queued" and made["attempts"] == 0 and made["automatic"] is False
    assert made["created_by"] == "admin"
    bad = client.post(
        "/api/v1/sharing/outbox", json={"start": END.isoformat(), "end": START.isoformat()}, headers=headers
    )
    assert bad.status_code == 400
    future = {"start": START.isoformat(), "end": (datetime.now(UTC) + timedelta(days=1)).isoformat()}
    assert client.post("/api/v1/sharing/outbox", json=future, headers=headers).status_code == 400

    receiver.answers = [(400, "schema error", {})]
    outbox.send_due(database, settings, datetime.now(UTC), rng=_rng())
    listed = client.get("/api/v1/sharing/outbox").json()
    assert listed["endpoint_configured"] is True and listed["endpoint"] == receiver.url
    assert listed["total"] == 1
    (item,) = listed["items"]
    assert item["status"] == "failed"
    assert item["attempt_list"][0]["answer"] == "schema error"
    assert item["attempt_list"][0]["http_status"] == 400
    assert client.get("/api/v1/sharing/outbox", params={"status": "delivered"}).json()["items"] == []

    retried = client.post(f"/api/v1/sharing/outbox/{item['id']}/retry", headers=headers)
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    assert client.post(f"/api/v1/sharing/outbox/{item['id']}/retry").status_code == 403  # no CSRF token
    document = client.get(f"/api/v1/sharing/outbox/{item['id']}/document")
    assert document.status_code == 200
    assert avreport.verify(document.content, receiver.agency_cert) is not None
    assert client.get("/api/v1/sharing/outbox/999999").status_code == 404
    with database.session() as session:
        actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("sharing.outbox%"))))
    assert actions == {"sharing.outbox_queue", "sharing.outbox_retry", "sharing.outbox_document"}

    for user in ("yte.admin", "yte.audit"):
        client.cookies.clear()
        csrf = login(client, user)
        assert client.get("/api/v1/sharing/outbox").status_code == 403
        assert client.get(f"/api/v1/sharing/outbox/{item['id']}").status_code == 403
        answer = client.post("/api/v1/sharing/outbox", json=period, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 403
        answer = client.post(f"/api/v1/sharing/outbox/{item['id']}/retry", headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 403


def test_queueing_through_the_api_is_refused_until_configured(
    client: TestClient, tree: dict[str, int], settings: ServerSettings
) -> None:
    settings.national_endpoint_url = ""
    headers = {"X-CSRF-Token": login(client)}
    answer = client.post("/api/v1/sharing/outbox", json={}, headers=headers)
    assert answer.status_code == 409
    assert "GARRISON_NATIONAL_ENDPOINT_URL" in answer.json()["message"]
    assert client.get("/api/v1/sharing/outbox").json()["endpoint_configured"] is False
