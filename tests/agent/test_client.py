"""The agent's client: fingerprints and pinning, URL checks, error mapping, Retry-After and backoff, identity files.

Server answers here come from httpx2's MockTransport (what a proxy or an overloaded server may send); the real
client against the real server is in tests/agent/test_daemon.py and tests/integration/.
"""

from __future__ import annotations

import json
import random
import ssl
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from garrison.agent import identity as identities
from garrison.agent.client import (
    AgentClient,
    Backoff,
    EnrollAgain,
    EnrollmentRefused,
    InsecureServerURL,
    PinMismatch,
    RequestRejected,
    ServerBusy,
    ServerFault,
    ServerUnreachable,
    call_with_retries,
    check_server_url,
    enroll,
    fingerprint,
    host_in_certificate,
    normalise_fingerprint,
    parse_retry_after,
)
from garrison.agent.identity import Identity, IdentityError
from garrison.protocol.enrollment import EnrollRequest
from garrison.protocol.events import EventBatch
from garrison.protocol.heartbeat import Inventory
from garrison.server import tls

SERVER = "https://127.0.0.1:8443"
TOKEN = "gse_" + "a" * 40


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def certificate() -> bytes:
    cert_pem, _ = tls.make_self_signed(["garrison.example.vn", "127.0.0.1", "localhost"])
    return _der(cert_pem)


def _request() -> EnrollRequest:
    return EnrollRequest(token=TOKEN, hostname="may-tram-01", os="Linux", os_version="Debian 12")


def _enrolled(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(201, json={"agent_id": "a-1", "secret": "s3cret", "unit_id": 7, "heartbeat_seconds": 60})


class Recorder:
    """A MockTransport handler that answers from a list and remembers the requests."""

    def __init__(self, *answers: Callable[[httpx2.Request], httpx2.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.answers.pop(0)(request)

    @property
    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)


def _client(recorder: Recorder, credential: tuple[str, str] | None = ("a-1", "s3cret")) -> AgentClient:
    return AgentClient(SERVER, credential=credential, transport=recorder.transport)


# -- fingerprints and trust -------------------------------------------------------------------------------------


def test_fingerprint_matches_the_servers_and_openssls_form(certificate: bytes, tmp_path: Path) -> None:
    path = tmp_path / "cert.pem"
    path.write_text(ssl.DER_cert_to_PEM_cert(certificate))
    assert fingerprint(certificate) == tls.certificate_fingerprint(path) == tls.fingerprint(certificate)
    assert len(fingerprint(certificate)) == 95 and fingerprint(certificate).count(":") == 31


@pytest.mark.parametrize(
    "written",
    [
        "{colons}",
        "{colons_lower}",
        "{bare}",
        "SHA256:{bare}",
        "sha256 Fingerprint={colons}",
        "  {spaced}  ",
    ],
)
def test_fingerprint_written_any_common_way(certificate: bytes, written: str) -> None:
    colons = fingerprint(certificate)
    bare = colons.replace(":", "")
    text = written.format(colons=colons, colons_lower=colons.lower(), bare=bare, spaced=colons.replace(":", " "))
    assert normalise_fingerprint(text) == colons


@pytest.mark.parametrize("text", ["", "AB:CD", "z" * 64, "a" * 63, "a" * 65, "md5:" + "a" * 32])
def test_not_a_fingerprint(text: str) -> None:
    with pytest.raises(ValueError, match="not a SHA-256 fingerprint"):
        normalise_fingerprint(text)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("GARRISON.example.vn.", True),
        ("10.0.0.5", False),
        ("other.example.vn", False),
        ("[::1]", False),
    ],
)
def test_host_in_certificate(certificate: bytes, host: str, expected: bool) -> None:
    assert host_in_certificate(host, certificate) is expected


# -- URLs and Retry-After ---------------------------------------------------------------------------------------


def test_plain_http_is_refused_unless_allowed() -> None:
    with pytest.raises(InsecureServerURL, match="HTTPS only"):
        check_server_url("http://garrison.example.vn:8443")
    assert str(check_server_url("http://127.0.0.1:8000/", allow_http=True)) == "http://127.0.0.1:8000/"
    assert (
        str(check_server_url(" https://garrison.example.vn:8443/proxy/ ")) == "https://garrison.example.vn:8443/proxy"
    )
    for bad in ("ftp://x", "https://", "garrison.example.vn", "https://h/?a=1"):
        with pytest.raises(InsecureServerURL):
            check_server_url(bad)


def test_an_https_client_needs_a_trust_context() -> None:
    with pytest.raises(ValueError, match="TLS context"):
        AgentClient(SERVER)


def test_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=90), usegmt=True), now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


# -- error mapping ----------------------------------------------------------------------------------------------


def _json(status: int, body: object, **headers: str) -> Callable[[httpx2.Request], httpx2.Response]:
    return lambda request: httpx2.Response(status, json=body, headers=headers)


def _inventory() -> Inventory:
    return Inventory(hostname="may-tram-01")


def test_429_and_503_carry_retry_after() -> None:
    recorder = Recorder(
        _json(429, {"error": "too_many_requests", "message": "slow down"}, **{"Retry-After": "7"}),
        _json(503, {"error": "unavailable", "message": "maintenance"}),
    )
    with _client(recorder) as client:
        with pytest.raises(ServerBusy, match="slow down") as busy:
            client.heartbeat(_inventory())
        assert busy.value.retry_after == 7.0 and busy.value.transient
        with pytest.raises(ServerBusy) as unavailable:
            client.heartbeat(_inventory())
        assert unavailable.value.retry_after is None


def test_credential_refused_says_enroll_again() -> None:
    message = "this agent was revoked; enroll again with a new token"
    recorder = Recorder(_json(401, {"error": "unauthorized", "message": message}))
    with _client(recorder) as client, pytest.raises(EnrollAgain) as refused:
        client.send_events(EventBatch())
    assert message in str(refused.value) and "garrison agent enroll" in str(refused.value)
    assert not refused.value.transient


def test_agent_requests_carry_the_credential_enrollment_does_not() -> None:
    beat = _json(200, {"next_seconds": 61.5, "server_time": "2026-11-25T08:00:00Z"})
    recorder = Recorder(_enrolled, beat)
    with _client(recorder) as client:
        client.enroll(_request())
        assert client.heartbeat(_inventory()).next_seconds == 61.5
    enroll_request, beat_request = recorder.requests
    assert "Authorization" not in enroll_request.headers
    assert beat_request.headers["Authorization"] == "Agent a-1:s3cret"
    assert beat_request.url.path == "/api/v1/agent/heartbeat"
    assert json.loads(beat_request.content)["inventory"]["hostname"] == "may-tram-01"
    assert enroll_request.headers["User-Agent"].startswith("garrison-agent/")


def test_token_refused_with_the_servers_reason() -> None:
    reason = "this enrollment token has expired; ask for a new one"
    recorder = Recorder(_json(401, {"error": "unauthorized", "message": reason}))
    with _client(recorder, credential=None) as client, pytest.raises(EnrollmentRefused, match="has expired"):
        client.enroll(_request())


def test_unenrolled_client_cannot_report() -> None:
    with _client(Recorder(), credential=None) as client, pytest.raises(EnrollAgain, match="not enrolled"):
        client.heartbeat(_inventory())


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (_json(500, {"error": "internal_error", "message": "boom"}), ServerFault, "boom"),
        (lambda r: httpx2.Response(502, text="<html>Bad Gateway</html>"), ServerFault, "Bad Gateway"),
        (lambda r: httpx2.Response(200, text="<html>captive portal</html>"), ServerFault, "not what a Garrison"),
        (_json(404, {"error": "not_found", "message": "no such route"}), RequestRejected, "no such route"),
    ],
)
def test_other_answers(
    answer: Callable[[httpx2.Request], httpx2.Response], error: type[Exception], message: str
) -> None:
    with _client(Recorder(answer)) as client, pytest.raises(error, match=message):
        client.heartbeat(_inventory())


def test_invalid_request_lists_the_problems() -> None:
    problems = [{"where": "body.detections.1.md5", "message": "bad"}]
    answer = _json(422, {"error": "invalid_request", "message": "the request is not valid", "problems": problems})
    with _client(Recorder(answer)) as client, pytest.raises(RequestRejected) as rejected:
        client.send_events(EventBatch())
    assert rejected.value.status == 422 and rejected.value.problems == problems


def test_connection_refused_is_unreachable() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)

    with _client(Recorder(refuse)) as client, pytest.raises(ServerUnreachable, match="cannot reach the server"):
        client.heartbeat(_inventory())


# -- backoff and retries ----------------------------------------------------------------------------------------


def test_full_jitter_stays_within_the_exponential_bound() -> None:
    backoff = Backoff(base=1.0, cap=30.0)
    rng = random.Random(7)
    for failures in range(12):
        bound = min(30.0, 2.0**failures)
        delays = [backoff.delay(failures, rng) for _ in range(200)]
        assert all(0.0 <= d <= bound for d in delays)
        assert max(delays) > bound * 0.8  # really spread over the whole range (full jitter)
    assert backoff.delay(10_000, rng) <= 30.0


def test_retry_after_is_honoured_up_to_its_cap() -> None:
    backoff = Backoff(base=1.0, cap=30.0, retry_after_cap=600.0)
    rng = random.Random(1)
    assert backoff.wait(ServerBusy("busy", 120.0), 0, rng) == 120.0
    assert backoff.wait(ServerBusy("busy", 86400.0), 0, rng) == 600.0
    assert 0.0 <= backoff.wait(ServerBusy("busy", None), 3, rng) <= 8.0


def test_call_with_retries_sleeps_as_told_and_gives_up() -> None:
    slept: list[float] = []
    recorder = Recorder(
        _json(429, {"message": "busy"}, **{"Retry-After": "5"}),
        _json(503, {"message": "busy"}, **{"Retry-After": "9"}),
        _enrolled,
    )
    with _client(recorder, credential=None) as client:
        answer = call_with_retries(lambda: client.enroll(_request()), backoff=Backoff(), attempts=5, sleep=slept.append)
    assert answer.agent_id == "a-1"
    assert slept == [5.0, 9.0]

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectTimeout("timed out", request=request)

    slept.clear()
    with _client(Recorder(refuse, refuse, refuse), credential=None) as client, pytest.raises(ServerUnreachable):
        call_with_retries(lambda: client.enroll(_request()), backoff=Backoff(cap=4.0), attempts=3, sleep=slept.append)
    assert len(slept) == 2 and all(0 <= s <= 4.0 for s in slept)


def test_call_with_retries_does_not_retry_a_refusal() -> None:
    slept: list[float] = []
    recorder = Recorder(_json(401, {"message": "unknown enrollment token"}))
    with _client(recorder, credential=None) as client, pytest.raises(EnrollmentRefused):
        call_with_retries(lambda: client.enroll(_request()), backoff=Backoff(), attempts=5, sleep=slept.append)
    assert slept == [] and len(recorder.requests) == 1


# -- enrollment and pinning -------------------------------------------------------------------------------------


def test_enroll_pins_the_presented_certificate(certificate: bytes) -> None:
    recorder = Recorder(_enrolled)
    fetched: list[tuple[str, int]] = []

    def fetch(host: str, port: int, timeout: float) -> bytes:
        fetched.append((host, port))
        return certificate

    enrolled = enroll(
        SERVER,
        _request(),
        pinned_fingerprint=fingerprint(certificate).replace(":", "").lower(),
        transport=recorder.transport,
        certificate_fetcher=fetch,
    )
    assert fetched == [("127.0.0.1", 8443)]
    assert enrolled.trust == "pinned" and enrolled.check_hostname  # 127.0.0.1 is among the certificate's names
    assert enrolled.fingerprint == fingerprint(certificate)
    assert ssl.PEM_cert_to_DER_cert(enrolled.trust_pem) == certificate
    assert (enrolled.agent_id, enrolled.secret, enrolled.unit_id) == ("a-1", "s3cret", 7)
    assert enrolled.server_url == SERVER
    assert json.loads(recorder.requests[0].content)["token"] == TOKEN


def test_enroll_by_a_name_missing_from_the_certificate_relies_on_the_pin(certificate: bytes) -> None:
    enrolled = enroll(
        "https://10.1.2.3:8443",
        _request(),
        pinned_fingerprint=fingerprint(certificate),
        transport=Recorder(_enrolled).transport,
        certificate_fetcher=lambda host, port, timeout: certificate,
    )
    assert enrolled.trust == "pinned" and not enrolled.check_hostname


def test_wrong_fingerprint_is_refused_before_anything_is_sent(certificate: bytes) -> None:
    recorder = Recorder(_enrolled)
    other = "AB:" * 31 + "AB"
    with pytest.raises(PinMismatch) as refused:
        enroll(
            SERVER,
            _request(),
            pinned_fingerprint=other,
            transport=recorder.transport,
            certificate_fetcher=lambda host, port, timeout: certificate,
        )
    text = str(refused.value)
    assert fingerprint(certificate) in text and other in text and "Nothing was sent" in text
    assert recorder.requests == []


def test_enroll_with_a_ca_checks_host_names(certificate: bytes) -> None:
    ca_pem = ssl.DER_cert_to_PEM_cert(certificate)
    enrolled = enroll(SERVER, _request(), ca_pem=ca_pem, transport=Recorder(_enrolled).transport)
    assert (enrolled.trust, enrolled.check_hostname, enrolled.fingerprint) == ("ca", True, None)
    assert enrolled.trust_pem == ca_pem


def test_enroll_needs_a_trust_anchor(certificate: bytes) -> None:
    with pytest.raises(ValueError, match="fingerprint"):
        enroll(SERVER, _request(), transport=Recorder().transport)
    with pytest.raises(ValueError, match="not both"):
        enroll(SERVER, _request(), pinned_fingerprint=fingerprint(certificate), ca_pem="x")
    with pytest.raises(InsecureServerURL):
        enroll("http://127.0.0.1:8000", _request(), transport=Recorder().transport)


def test_enroll_honours_retry_after(certificate: bytes) -> None:
    slept: list[float] = []
    recorder = Recorder(_json(429, {"message": "busy"}, **{"Retry-After": "30"}), _enrolled)
    enroll(
        SERVER,
        _request(),
        pinned_fingerprint=fingerprint(certificate),
        transport=recorder.transport,
        certificate_fetcher=lambda host, port, timeout: certificate,
        sleep=slept.append,
    )
    assert slept == [30.0] and len(recorder.requests) == 2


# -- the identity file ------------------------------------------------------------------------------------------


def _identity(certificate: bytes) -> Identity:
    return Identity(
        agent_id="a-1",
        secret="s3cret-value",
        server_url=SERVER,
        unit_id=7,
        trust="pinned",
        trust_pem=ssl.DER_cert_to_PEM_cert(certificate),
        check_hostname=True,
        fingerprint=fingerprint(certificate),
        enrolled_at=datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
        heartbeat_seconds=60.0,
    )


def test_identity_round_trip_private_and_atomic(certificate: bytes, tmp_path: Path) -> None:
    path = tmp_path / "state" / "identity.json"
    assert identities.load(path) is None
    identity = _identity(certificate)
    identities.save(path, identity)
    assert identities.load(path) == identity
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "s3cret" not in repr(identity)
    identities.save(path, _identity(certificate))  # replaced in place, no temporary file left behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["identity.json"]


@pytest.mark.parametrize("content", ["", "{", '{"format": 99}', '{"format": 1, "agent_id": "x"}', "[]"])
def test_damaged_identity(tmp_path: Path, content: str) -> None:
    path = tmp_path / "identity.json"
    path.write_text(content)
    with pytest.raises(IdentityError, match="enroll again"):
        identities.load(path)


def test_client_from_identity_trusts_only_the_pinned_certificate(certificate: bytes) -> None:
    identity = _identity(certificate)
    recorder = Recorder(_json(200, {"next_seconds": 60, "server_time": "2026-11-25T08:00:00Z"}))
    with AgentClient.for_identity(identity, transport=recorder.transport) as client:
        client.heartbeat(_inventory())
    assert recorder.requests[0].headers["Authorization"] == "Agent a-1:s3cret-value"
    with AgentClient.for_identity(identity) as client:  # builds the real TLS context from the saved PEM
        assert client.fingerprint == identity.fingerprint
