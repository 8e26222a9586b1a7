"""The agent's HTTPS client: enrollment with certificate pinning, heartbeats and event batches.

One request is one attempt: :class:`AgentClient` turns every failure into a :class:`ClientError` whose message
says what to fix, and whether it is worth retrying (``transient``). Waiting is the caller's decision:
:class:`Backoff` computes how long (exponential backoff with full jitter, or the server's ``Retry-After``), and
:func:`call_with_retries` retries a call with an injectable ``sleep`` for the one-shot commands; the daemon keeps
its own schedule.

Trust (see :mod:`garrison.agent.identity`): the agent speaks HTTPS only (``http://`` needs an explicit
development flag). At enrollment it is given the SHA-256 fingerprint of the server's certificate; it reads the
certificate the server presents, refuses to go on unless the fingerprint matches, and from then on uses that
certificate as its only trust anchor. With ``--ca-file`` it trusts that CA instead and checks host names.

The transport is injectable (``httpx2.BaseTransport``), so tests can route requests to the application in-process
or to a fake outside server. This module never imports the server.

Errors::

    ClientError
    ├── InsecureServerURL   not an https:// URL (and http:// not allowed)
    ├── PinMismatch         the certificate presented at enrollment is not the one whose fingerprint was given
    ├── UntrustedServer     the server's certificate does not verify against the saved trust anchor
    ├── ServerUnreachable   connection refused, timed out, reset... (transient)
    ├── ServerBusy          429 or 503, with the Retry-After seconds when given (transient)
    ├── ServerFault         another 5xx, or an answer that is not the protocol (transient)
    ├── EnrollmentRefused   the enrollment token was refused; the server's message says why
    ├── EnrollAgain         the agent's credential is refused (revoked or unknown): enroll again
    └── RequestRejected     another 4xx (e.g. 422 with the list of problems)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, TypeVar

import httpx2
from cryptography import x509
from pydantic import BaseModel, ValidationError

from garrison import __version__
from garrison.agent.identity import Identity, TrustKind
from garrison.protocol.enrollment import EnrollRequest, EnrollResponse
from garrison.protocol.events import BatchAck, EventBatch
from garrison.protocol.heartbeat import Heartbeat, HeartbeatResponse, Inventory
from garrison.protocol.policy import PolicyDocument

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

ENROLL_HINT = "garrison agent enroll --server URL --token TOKEN --fingerprint SHA256"


class _Uploaded(BaseModel):
    """The part of the server's answer to an upload the agent reads."""

    id: int
    sha256: str


# -- errors ---------------------------------------------------------------------------------------------------


class ClientError(Exception):
    """A request did not succeed; ``str(error)`` says what to fix. ``transient``: trying later may work."""

    transient: ClassVar[bool] = False


class InsecureServerURL(ClientError):
    pass


class PinMismatch(ClientError):
    pass


class UntrustedServer(ClientError):
    pass


class ServerUnreachable(ClientError):
    transient = True


class ServerBusy(ClientError):
    transient = True

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerFault(ClientError):
    transient = True


class EnrollmentRefused(ClientError):
    pass


class EnrollAgain(ClientError):
    pass


class RequestRejected(ClientError):
    def __init__(self, message: str, status: int, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problems = problems or []


# -- fingerprints and trust -----------------------------------------------------------------------------------

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as ``openssl x509 -fingerprint -sha256`` and ``garrison server fingerprint``
    print it: ``AB:CD:...``."""
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def normalise_fingerprint(text: str) -> str:
    """``AB:CD:...`` from a fingerprint written with or without colons, spaces or a ``sha256:`` prefix.

    Raises:
        ValueError: not 64 hexadecimal digits.
    """
    cleaned = text.strip().lower()
    for prefix in ("sha256:", "sha256=", "sha256 fingerprint="):
        cleaned = cleaned.removeprefix(prefix)
    digits = re.sub(r"[\s:\-]", "", cleaned)
    if not _HEX64.match(digits):
        raise ValueError(
            f"{text!r} is not a SHA-256 fingerprint (64 hexadecimal digits, with or without colons); "
            "the server prints it with: garrison server fingerprint"
        )
    return ":".join(digits[i : i + 2] for i in range(0, 64, 2)).upper()


def fetch_certificate(host: str, port: int, timeout: float) -> bytes:
    """The DER certificate a TLS server presents, read without verifying it.

    Only for comparing it with a pinned fingerprint before anything is sent: nothing but the handshake happens
    on this connection.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # read only; the caller compares the certificate with the pin
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except ssl.SSLError as exc:
        raise ServerUnreachable(
            f"cannot start TLS with {host}:{port}: {exc.reason or exc}; is it an HTTPS server?"
        ) from exc
    except OSError as exc:
        raise ServerUnreachable(_unreachable(f"{host}:{port}", exc.strerror or str(exc))) from exc
    if not der:
        raise ServerUnreachable(f"the server at {host}:{port} presented no certificate")
    return der


def certificate_names(der: bytes) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """The DNS names and IP addresses in a certificate's subject alternative names."""
    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    dns = {name.lower().rstrip(".") for name in names.get_values_for_type(x509.DNSName)}
    ips = {
        ip
        for ip in names.get_values_for_type(x509.IPAddress)
        if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
    }
    return dns, ips


def host_in_certificate(host: str, der: bytes) -> bool:
    """Whether TLS host-name checking would accept ``host`` for this certificate (its SAN; one-label wildcards)."""
    dns, ips = certificate_names(der)
    host = host.strip("[]").lower().rstrip(".")
    try:
        return ipaddress.ip_address(host) in ips
    except ValueError:
        pass
    if host in dns:
        return True
    label, _, rest = host.partition(".")
    return bool(label and rest and f"*.{rest}" in dns)


def ssl_context(trust_pem: str, *, check_hostname: bool, pinned: bool) -> ssl.SSLContext:
    """A client context that trusts ``trust_pem`` only (no system CAs), TLS 1.2 or later.

    ``pinned``: the PEM is the server's own certificate, accepted as a trust anchor even when a CA issued it
    (partial chain), so pinning also works behind a reverse proxy with a public certificate.
    """
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=trust_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise UntrustedServer(f"the saved trust anchor is not a valid PEM certificate ({exc}); enroll again") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    if pinned:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def check_server_url(url: str, *, allow_http: bool = False) -> httpx2.URL:
    """The server's base URL, checked: https:// (http:// only when allowed), a host, no query."""
    try:
        parsed = httpx2.URL(url.strip())
    except httpx2.InvalidURL as exc:
        raise InsecureServerURL(f"{url!r} is not a server URL: {exc}") from exc
    if parsed.scheme == "http" and not allow_http:
        raise InsecureServerURL(
            f"{url} is plain HTTP: the agent talks to its server over HTTPS only (the agent's credential would "
            "travel in clear text). Use https://; for development only, set GARRISON_AGENT_ALLOW_HTTP=1."
        )
    if parsed.scheme not in ("https", "http") or not parsed.host:
        raise InsecureServerURL(f"{url!r} is not a server URL like https://garrison.example.gov.vn:8443")
    if parsed.query or parsed.fragment:
        raise InsecureServerURL(f"{url!r}: a server URL has no query or fragment")
    return parsed.copy_with(path=parsed.path.rstrip("/") or "/")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date); None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def _unreachable(where: str, reason: str) -> str:
    return (
        f"cannot reach the server at {where}: {reason}. Check the address and port, that the server is running, "
        "and that no firewall is in the way"
    )


def _certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _server_message(response: httpx2.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(message, str):
        return message
    text = response.text.strip().replace("\n", " ")
    return text[:200] or f"HTTP {response.status_code}"


# -- retries --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before trying again.

    After ``failures`` failures in a row: the server's ``Retry-After`` when it gave one (at most
    ``retry_after_cap``), else a random time in ``[0, min(cap, base * 2**failures)]`` (full jitter, so that
    agents cut off together do not come back together).
    """

    base: float = 1.0
    cap: float = 300.0
    retry_after_cap: float = 3600.0

    def delay(self, failures: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap, self.base * 2.0 ** min(failures, 60)))

    def wait(self, error: ClientError, failures: int, rng: random.Random) -> float:
        if isinstance(error, ServerBusy) and error.retry_after is not None:
            return min(error.retry_after, self.retry_after_cap)
        return self.delay(failures, rng)


def call_with_retries(
    call: Callable[[], T],
    *,
    backoff: Backoff,
    attempts: int,
    sleep: Callable[[float], object] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[ClientError, float], object] | None = None,
) -> T:
    """``call()``, tried up to ``attempts`` times while it fails with a transient error; the last error is raised."""
    rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
    failures = 0
    while True:
        try:
            return call()
        except ClientError as error:
            failures += 1
            if not error.transient or failures >= attempts:
                raise
            wait = backoff.wait(error, failures - 1, rng)
            if on_retry is not None:
                on_retry(error, wait)
            sleep(wait)


# -- the client -----------------------------------------------------------------------------------------------


class AgentClient:
    """Requests to the server, one attempt each.

    Args:
        server_url: ``https://host:port`` (a path prefix is kept, for a reverse proxy that adds one).
        context: the TLS context that decides which server is trusted (see :func:`ssl_context`); required for
            https:// unless ``transport`` is given.
        credential: ``(agent_id, secret)`` for the agent endpoints.
        transport: where requests go instead of the network (tests).
        timeout: seconds for connecting, reading and writing, each.
        allow_http: accept an ``http://`` URL (development only).
        proxy: an HTTP(S) proxy URL; proxy environment variables are ignored.
    """

    def __init__(
        self,
        server_url: str,
        context: ssl.SSLContext | None = None,
        *,
        credential: tuple[str, str] | None = None,
        transport: httpx2.BaseTransport | None = None,
        timeout: float = 30.0,
        allow_http: bool = False,
        proxy: str | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.url = check_server_url(server_url, allow_http=allow_http)
        self.fingerprint = fingerprint
        if transport is None:
            if self.url.scheme == "https" and context is None:
                raise ValueError("an https:// server needs a TLS context that says which certificate to trust")
            transport = httpx2.HTTPTransport(verify=context or False, proxy=proxy, trust_env=False, retries=0)
        self._credential = credential
        self._http = httpx2.Client(
            base_url=self.url,
            transport=transport,
            timeout=timeout,
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": f"garrison-agent/{__version__}", "Content-Type": "application/json"},
        )

    @classmethod
    def for_identity(
        cls,
        identity: Identity,
        *,
        transport: httpx2.BaseTransport | None = None,
        timeout: float = 30.0,
        allow_http: bool = False,
        proxy: str | None = None,
    ) -> AgentClient:
        context = None
        if identity.trust != "none" and transport is None:
            context = ssl_context(
                identity.trust_pem, check_hostname=identity.check_hostname, pinned=identity.trust == "pinned"
            )
        return cls(
            identity.server_url,
            context,
            credential=(identity.agent_id, identity.secret),
            transport=transport,
            timeout=timeout,
            allow_http=allow_http or identity.trust == "none",
            proxy=proxy,
            fingerprint=identity.fingerprint,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol -------------------------------------------------------------------------------------------

    def enroll(self, request: EnrollRequest) -> EnrollResponse:
        response = self._post("/api/v1/agent/enroll", request, authenticated=False)
        if response.status_code in (400, 401, 403):
            raise EnrollmentRefused(f"the server refused the enrollment token: {_server_message(response)}")
        return self._parse(response, EnrollResponse)

    def heartbeat(self, inventory: Inventory) -> HeartbeatResponse:
        return self._parse(
            self._agent_post("/api/v1/agent/heartbeat", Heartbeat(inventory=inventory)), HeartbeatResponse
        )

    def send_events(self, batch: EventBatch) -> BatchAck:
        return self._parse(self._agent_post("/api/v1/agent/events", batch), BatchAck)

    def policy(self) -> PolicyDocument:
        """The policy this agent must apply now."""
        return self._parse(self._agent_request("GET", "/api/v1/agent/policy"), PolicyDocument)

    def upload_sample(self, task_id: int, path: str, data: bytes) -> None:
        """Upload a file a collect task asked for (the server checks its SHA-256 and keeps it encrypted)."""
        params = {"path": path, "sha256": hashlib.sha256(data).hexdigest()}
        response = self._agent_request(
            "PUT",
            f"/api/v1/agent/tasks/{task_id}/sample",
            content=data,
            params=params,
            content_type="application/octet-stream",
        )
        self._parse(response, _Uploaded)

    # -- plumbing -----------------------------------------------------------------------------------------------

    def download(self, path: str, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """GET a file of the update repository (signed metadata or a target) in chunks, authenticated as this
        agent; the caller verifies what it gets (TUF) and bounds its length."""
        if self._credential is None:
            raise EnrollAgain(f"this agent is not enrolled; enroll it first: {ENROLL_HINT}")
        agent_id, secret = self._credential
        where = str(self.url).rstrip("/")
        try:
            with self._http.stream("GET", path, headers={"Authorization": f"Agent {agent_id}:{secret}"}) as response:
                if response.status_code != 200:
                    response.read()
                    message = _server_message(response)
                    if response.status_code == 401:
                        raise EnrollAgain(f"the server no longer accepts this agent: {message}")
                    if response.status_code in (429, 503):
                        retry_after = parse_retry_after(response.headers.get("Retry-After"))
                        raise ServerBusy(f"the server is busy (HTTP {response.status_code}: {message})", retry_after)
                    raise RequestRejected(f"HTTP {response.status_code}: {message}", response.status_code)
                yield from response.iter_bytes(chunk_size)
        except httpx2.TransportError as exc:
            raise ServerUnreachable(_unreachable(where, str(exc) or type(exc).__name__)) from exc

    def _agent_post(self, path: str, body: BaseModel) -> httpx2.Response:
        return self._agent_request("POST", path, content=body.model_dump_json().encode())

    def _agent_request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> httpx2.Response:
        if self._credential is None:
            raise EnrollAgain(f"this agent is not enrolled; enroll it first: {ENROLL_HINT}")
        response = self._request(
            method, path, content=content, params=params, content_type=content_type, authenticated=True
        )
        if response.status_code == 401:
            raise EnrollAgain(
                f"the server no longer accepts this agent: {_server_message(response)}. "
                f"Ask for a new token in the console and enroll again: {ENROLL_HINT}"
            )
        return response

    def _post(self, path: str, body: BaseModel, *, authenticated: bool) -> httpx2.Response:
        return self._request("POST", path, content=body.model_dump_json().encode(), authenticated=authenticated)

    def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        authenticated: bool,
    ) -> httpx2.Response:
        headers = {"Content-Type": content_type}
        if authenticated and self._credential is not None:
            agent_id, secret = self._credential
            headers["Authorization"] = f"Agent {agent_id}:{secret}"
        where = str(self.url).rstrip("/")
        try:
            response = self._http.request(method, path, content=content, params=params, headers=headers)
        except httpx2.TransportError as exc:
            failure = _certificate_failure(exc)
            if failure is not None:
                pin = f" (pinned fingerprint {self.fingerprint})" if self.fingerprint else ""
                raise UntrustedServer(
                    f"the server at {where} presented a certificate this agent does not trust: "
                    f"{failure.verify_message or failure.reason}. The agent trusts only the certificate it was "
                    f"enrolled with{pin}; if the server's certificate was replaced, enroll again with the new "
                    "fingerprint"
                ) from exc
            raise ServerUnreachable(_unreachable(where, str(exc) or type(exc).__name__)) from exc
        if response.status_code in (429, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise ServerBusy(
                f"the server is busy (HTTP {response.status_code}: {_server_message(response)})", retry_after
            )
        if response.status_code >= 500:
            raise ServerFault(f"the server failed (HTTP {response.status_code}): {_server_message(response)}")
        return response

    @staticmethod
    def _parse(response: httpx2.Response, model: type[M]) -> M:
        if not 200 <= response.status_code < 300:
            problems = None
            try:
                body = response.json()
                if isinstance(body, dict) and isinstance(body.get("problems"), list):
                    problems = body["problems"]
            except ValueError:
                pass
            raise RequestRejected(
                f"the server rejected the request (HTTP {response.status_code}): {_server_message(response)}",
                response.status_code,
                problems,
            )
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ServerFault(
                f"the answer is not what a Garrison server sends ({exc.error_count()} problems); "
                "is the URL right, and is no proxy answering instead?"
            ) from exc


# -- enrollment -----------------------------------------------------------------------------------------------


def enroll(
    server_url: str,
    request: EnrollRequest,
    *,
    pinned_fingerprint: str | None = None,
    ca_pem: str | None = None,
    allow_http: bool = False,
    timeout: float = 30.0,
    proxy: str | None = None,
    transport: httpx2.BaseTransport | None = None,
    certificate_fetcher: Callable[[str, int, float], bytes] = fetch_certificate,
    backoff: Backoff | None = None,
    attempts: int = 5,
    sleep: Callable[[float], object] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Identity:
    """Enroll with the server and return the new identity (the caller saves it).

    With ``pinned_fingerprint``: reads the certificate the server presents and refuses (:class:`PinMismatch`,
    nothing sent) unless its SHA-256 matches; then enrolls over a connection that trusts that certificate only.
    With ``ca_pem``: trusts that CA and checks the host name. One of the two is required for https://.
    """
    url = check_server_url(server_url, allow_http=allow_http)
    trust: TrustKind
    pin: str | None
    if url.scheme == "http":
        trust, trust_pem, check_hostname, pin = "none", "", False, None
        log.warning("enrolling over plain HTTP (development only): the credential travels in clear text")
    elif pinned_fingerprint and ca_pem:
        raise ValueError("give the server's fingerprint or a CA file, not both")
    elif pinned_fingerprint:
        pin = normalise_fingerprint(pinned_fingerprint)
        host = url.host
        port = url.port or 443
        der = certificate_fetcher(host, port, timeout)
        presented = fingerprint(der)
        if not hmac.compare_digest(presented, pin):
            raise PinMismatch(
                f"the server at {host}:{port} presented a certificate with SHA-256 fingerprint\n  {presented}\n"
                f"but the fingerprint given is\n  {pin}\nNothing was sent. Compare with `garrison server "
                "fingerprint` on the server; if that matches what you gave, something else answers at this "
                "address (a TLS-inspecting proxy, or an attacker)."
            )
        trust, trust_pem, check_hostname = "pinned", ssl.DER_cert_to_PEM_cert(der), host_in_certificate(host, der)
        if not check_hostname:
            log.info(
                "%s is not among the certificate's names: the pinned certificate alone identifies the server", host
            )
    elif ca_pem:
        trust, trust_pem, check_hostname, pin = "ca", ca_pem, True, None
    else:
        raise ValueError("give the server certificate's fingerprint (--fingerprint) or a CA file (--ca-file)")
    context = (
        None if trust == "none" else ssl_context(trust_pem, check_hostname=check_hostname, pinned=trust == "pinned")
    )
    with AgentClient(
        str(url), context, transport=transport, timeout=timeout, allow_http=allow_http, proxy=proxy, fingerprint=pin
    ) as client:
        answer = call_with_retries(
            lambda: client.enroll(request),
            backoff=backoff or Backoff(),
            attempts=attempts,
            sleep=sleep,
            on_retry=lambda error, wait: log.warning("%s; trying again in %.0f s", error, wait),
        )
    return Identity(
        agent_id=answer.agent_id,
        secret=answer.secret,
        server_url=str(url).rstrip("/"),
        unit_id=answer.unit_id,
        trust=trust,
        trust_pem=trust_pem,
        check_hostname=check_hostname,
        fingerprint=pin,
        enrolled_at=now(),
        heartbeat_seconds=float(answer.heartbeat_seconds),
    )
