"""The child's side: joining a parent, the link's files in the data directory, and pushing.

``data_dir/federation/`` holds, each mode 0600: ``parent.json`` (the parent's URL and name, the child id it gave,
the pinned certificate and its fingerprint, the link's random id), ``child-key.pem`` (the Ed25519 private key) and
``status.json`` (last push, last error, last sequence used). A server with no ``parent.json`` reports to nobody
and its push loop does nothing (it does not even open the database).

A push (:func:`push`) sends the statistics of the whole tree for the current and the previous quarter, and the
reports submitted here (for a top unit of this tree) that the parent has not acknowledged yet, at most
``MAX_REPORTS`` per request (further requests in the same pass send the rest). It is signed with the child's key;
the sequence number is the time in microseconds, or one more than the last one used when the clock went back.
The parent is reached over HTTPS trusting only the certificate pinned when joining. A failure is recorded in
``status.json`` (shown by ``garrison server federation status`` and the console) and the next pass tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import logging
import os
import shutil
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from garrison import __version__
from garrison.atomicfile import write_atomic
from garrison.server import tls
from garrison.server.auth.scope import Scope
from garrison.server.db import Database, utcnow
from garrison.server.federation import signing
from garrison.server.federation.models import FederationAcknowledged
from garrison.server.federation.schemas import MAX_REPORTS, PUSH_FORMAT, JoinIn, JoinOut, PushOut
from garrison.server.reports import statistics
from garrison.server.reports.models import ReportSubmission
from garrison.server.settings import ServerSettings
from garrison.server.units.models import Unit

logger = logging.getLogger(__name__)

DIRECTORY = "federation"
LINK_FILE = "parent.json"
KEY_FILE = "child-key.pem"
STATUS_FILE = "status.json"
LOCK_FILE = "push.lock"
JOIN_PATH = "/api/v1/federation/join"
PUSH_PATH = "/api/v1/federation/push"
#: The longest answer read from a parent.
MAX_ANSWER = 1024 * 1024

#: ``post(path, body, headers) -> (status, answer body)``; raises :class:`FederationError` when unreachable.
Transport = Callable[[str, bytes, dict[str, str]], tuple[int, bytes]]


class FederationError(Exception):
    """Joining or pushing failed; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Link:
    """This server's registration with its parent."""

    parent_url: str
    parent_name: str
    child_id: int
    name: str
    unit_name: str
    link: str  # random id of this join (acknowledgements belong to it)
    fingerprint: str  # of the parent's certificate, pinned
    trust_pem: str
    joined_at: str


@dataclass(slots=True)
class Status:
    last_push_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    last_sequence: int = 0


@dataclass(frozen=True, slots=True)
class Pushed:
    """What one pass sent: requests made and reports the parent acknowledged."""

    requests: int
    reports: int


def directory(data_dir: Path) -> Path:
    return Path(data_dir) / DIRECTORY


def link_of(data_dir: Path) -> Link | None:
    path = directory(data_dir) / LINK_FILE
    if not path.is_file():
        return None
    try:
        return Link(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise FederationError(
            f"{path} is damaged ({exc}); run `garrison server federation leave` and join again"
        ) from exc


def status_of(data_dir: Path) -> Status:
    path = directory(data_dir) / STATUS_FILE
    try:
        return Status(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return Status()


def _save(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(asdict(value), ensure_ascii=False, indent=2).encode(), 0o600)


# -- the parent over HTTPS ------------------------------------------------------------------------------------


def check_parent_url(url: str) -> str:
    """``https://host[:port][/prefix]`` without a trailing slash; ValueError otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise ValueError(f"{url!r} is not a parent URL like https://garrison.tinh.gov.vn:8443")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a parent URL has no query or fragment")
    return url.strip().rstrip("/")


def https_transport(parent_url: str, trust_pem: str, fingerprint: str, timeout: float = 30.0) -> Transport:
    """Requests to the parent, trusting only the certificate pinned when joining (its fingerprint is compared
    on every connection; host names are not checked: the pinned certificate alone identifies the parent)."""
    parts = urlsplit(parent_url)
    host, port, prefix = parts.hostname or "", parts.port or 443, parts.path.rstrip("/")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=trust_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise FederationError(f"the pinned certificate of the parent is not valid ({exc}); join again") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the pinned certificate is the trust anchor

    def post(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        try:
            connection.connect()
            sock = connection.sock
            der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
            if not der or tls.fingerprint(der) != fingerprint:
                raise FederationError(f"the parent at {host}:{port} presented another certificate than the pinned one")
            all_headers = {"Content-Type": "application/json", "User-Agent": f"garrison-server/{__version__}"}
            connection.request("POST", prefix + path, body=body, headers={**all_headers, **headers})
            response = connection.getresponse()
            return response.status, response.read(MAX_ANSWER)
        except (OSError, http.client.HTTPException) as exc:
            raise FederationError(f"cannot reach the parent at {host}:{port}: {exc}") from exc
        finally:
            connection.close()

    return post


def _message(status: int, answer: bytes) -> str:
    try:
        body = json.loads(answer)
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else f"HTTP {status}"


def _answer(status: int, answer: bytes, model: type[BaseModel], what: str) -> Any:
    if status >= 300:
        raise FederationError(f"the parent refused the {what} (HTTP {status}): {_message(status, answer)}")
    try:
        return model.model_validate_json(answer)
    except ValidationError as exc:
        raise FederationError(f"the parent's answer to the {what} is not what Garrison answers ({exc})") from exc


# -- joining, leaving -----------------------------------------------------------------------------------------


def join(
    settings: ServerSettings,
    parent_url: str,
    token: str,
    trust_pem: str,
    fingerprint: str,
    *,
    transport: Transport | None = None,
) -> Link:
    """Register with the parent: a new key pair, its public half sent with the one-time token; the key, the link
    and the pinned certificate are saved only once the parent accepted."""
    url = check_parent_url(parent_url)
    if link_of(settings.data_dir) is not None:
        raise FederationError("this server already reports to a parent; `garrison server federation leave` first")
    post = transport or https_transport(url, trust_pem, fingerprint)
    folder = directory(settings.data_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    pending = folder / f".{KEY_FILE}.new"
    key = signing.new_key(pending)
    body = JoinIn(
        token=token.strip(),
        public_key=signing.public_text(key),
        software_version=__version__,
        push_seconds=settings.federation_push_seconds,
    )
    try:
        status, answer = post(JOIN_PATH, body.model_dump_json().encode(), {})
        joined: JoinOut = _answer(status, answer, JoinOut, "join")
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    os.replace(pending, folder / KEY_FILE)
    link = Link(
        parent_url=url,
        parent_name=joined.parent_name,
        child_id=joined.child_id,
        name=joined.name,
        unit_name=joined.unit_name,
        link=str(uuid.uuid4()),
        fingerprint=fingerprint,
        trust_pem=trust_pem,
        joined_at=utcnow().isoformat(),
    )
    _save(folder / LINK_FILE, link)
    _save(folder / STATUS_FILE, Status())
    return link


def leave(data_dir: Path) -> bool:
    """Forget the parent (its files, the key included); whether there was one. The parent still lists this child
    until its administrators revoke it."""
    folder = directory(data_dir)
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


# -- pushing --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    # Several server processes (uvicorn workers) share a data directory: one pushes at a time, so the sequence
    # numbers they use stay increasing.
    with (folder / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _quarters(session: Session, settings: ServerSettings, now: datetime) -> list[dict[str, Any]]:
    year, quarter = statistics.current_quarter(now)
    previous = (year, quarter - 1) if quarter > 1 else (year - 1, 4)
    scope = Scope.whole_tree(writable=False)
    return [
        {
            "year": y,
            "quarter": q,
            "statistics": statistics.compute(
                session, scope, None, *statistics.quarter_bounds(y, q),
                heartbeat_seconds=settings.heartbeat_seconds, now=now,
            ).to_json(),
        }
        for y, q in ((year, quarter), previous)
    ]  # fmt: skip


def _reports(session: Session, link: Link) -> list[dict[str, Any]]:
    """Reports submitted here for a top unit of this tree (what this server reports as a whole), not yet
    acknowledged by this link's parent; reports received from this server's own children stay here."""
    acknowledged = select(FederationAcknowledged.submission_id).where(FederationAcknowledged.link == link.link)
    rows = session.execute(
        select(ReportSubmission, Unit.name)
        .join(Unit, Unit.id == ReportSubmission.unit_id)
        .where(
            ReportSubmission.received_from.is_(None),
            Unit.parent_id.is_(None),
            ReportSubmission.id.not_in(acknowledged),
        )
        .order_by(ReportSubmission.id)
        .limit(MAX_REPORTS)
    ).all()
    return [
        {
            "id": row.id,
            "version": row.version,
            "unit_name": unit_name,
            "year": row.year,
            "quarter": row.quarter,
            "figures": row.figures,
            "info": row.info,
            "submitted_at": (
                row.submitted_at if row.submitted_at.tzinfo else row.submitted_at.replace(tzinfo=UTC)
            ).isoformat(),
            "submitted_by_name": row.submitted_by_name,
        }
        for row, unit_name in rows
    ]


def _push_once(
    database: Database, settings: ServerSettings, link: Link, key_path: Path, status: Status, post: Transport
) -> int:
    """One signed request; the number of reports the parent acknowledged."""
    now = utcnow()
    with database.session() as session:  # short: SQLite's write lock is not held while the network is waited on
        quarters = _quarters(session, settings, now)
        reports = _reports(session, link)
    status.last_sequence = max(status.last_sequence + 1, int(now.timestamp() * 1_000_000))
    _save(directory(settings.data_dir) / STATUS_FILE, status)  # used before it is sent: never used twice
    body = json.dumps(
        {
            "format": PUSH_FORMAT,
            "child_id": link.child_id,
            "sequence": status.last_sequence,
            "sent_at": now.isoformat(),
            "software_version": __version__,
            "push_seconds": settings.federation_push_seconds,
            "quarters": quarters,
            "reports": reports,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    headers = {
        signing.CHILD_HEADER: str(link.child_id),
        signing.SIGNATURE_HEADER: signing.sign(signing.load_key(key_path), body),
    }
    answer: PushOut = _answer(*post(PUSH_PATH, body, headers), PushOut, "push")
    sent = {(r["id"], r["version"]) for r in reports}
    acknowledged = [k.id for k in answer.acknowledged if (k.id, k.version) in sent]
    with database.session() as session:
        for submission_id in acknowledged:
            session.merge(FederationAcknowledged(link=link.link, submission_id=submission_id, acknowledged_at=now))
    if len(acknowledged) < len(reports):
        raise FederationError(f"the parent acknowledged {len(acknowledged)} of the {len(reports)} reports sent")
    return len(acknowledged)


def push(database: Database, settings: ServerSettings, *, transport: Transport | None = None) -> Pushed:
    """Push to the parent now: the figures, then every report not yet acknowledged. Raises
    :class:`FederationError` (also recorded as the last error) when this server has not joined or a request
    failed."""
    link = link_of(settings.data_dir)
    if link is None:
        raise FederationError("this server does not report to a parent; join one first")
    folder = directory(settings.data_dir)
    with _locked(folder):
        status = status_of(settings.data_dir)
        post = transport or https_transport(link.parent_url, link.trust_pem, link.fingerprint)
        requests = reports = 0
        try:
            while True:
                sent = _push_once(database, settings, link, folder / KEY_FILE, status, post)
                requests += 1
                reports += sent
                if sent < MAX_REPORTS:
                    break
        except (FederationError, OSError, ValueError) as exc:
            status.last_error = str(exc)
            status.last_error_at = utcnow().isoformat()
            _save(folder / STATUS_FILE, status)
            raise FederationError(str(exc)) from exc
        status.last_push_at = utcnow().isoformat()
        status.last_error = status.last_error_at = None
        _save(folder / STATUS_FILE, status)
    return Pushed(requests, reports)


def push_if_joined(database: Database, settings: ServerSettings) -> None:
    """The background pass (``federation_push_seconds``): nothing when this server has no parent; a failure is
    logged (and recorded for the console) and the next pass tries again."""
    try:
        if link_of(settings.data_dir) is None:
            return
        push(database, settings)
    except FederationError as exc:
        logger.warning("federation push failed (next pass in %s s): %s", settings.federation_push_seconds, exc)
