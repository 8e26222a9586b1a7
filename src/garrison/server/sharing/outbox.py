"""The national outbox: signed AVReports queued in the database and delivered to the national authority over
HTTPS, with retries, backoff and a record of every attempt and answer (regulations.md §7B–§7C, §8).

Life of a report::

    queue() ──> queued ──claim()──> sending ──finish()──> delivered
                  ^                    │  └───────────────> failed  (4xx, or out of attempts) ──retry()──> queued
                  └──── retry later ───┘  (5xx, 408, 429, timeout, no connection: backoff or Retry-After)
                  └──── recover() ─────┘  (the sending process died: the claim is older than stale_after)

- *Idempotency*: each report gets a message id (a UUID) when it is made. It is written in the signed document
  (``MessageHeader/DocumentId``) and sent in the ``Idempotency-Key`` header of every attempt, and the document's
  bytes never change after signing: a receiver that saw the id already can drop the copy. Delivery is
  at-least-once: a crash after the receiver answered but before the answer was recorded sends it again.
- *Claims*: a worker takes an item with one conditional UPDATE (``status = 'queued' AND next_attempt_at <= now``)
  and a random claim token, commits, then sends outside any transaction; the outcome is written only if the claim
  is still its own. Two workers (threads or server processes) therefore never send one item at the same time, on
  SQLite and on PostgreSQL alike. A ``sending`` claim older than :func:`stale_after` belonged to a process that
  died: :func:`recover` puts the item back in the queue.
- *Schedule* (``national_send_hours`` = N, 0 = never): time is cut into windows of N hours counted from
  midnight, Vietnam time, 1 January 2000 (N = 24: Vietnam days; N = 168: weeks from a Saturday). When a window
  has ended, one automatic report covers the time from the end of the last automatic report (any status: a
  failed one is retried, not replaced) to the end of that window; the first covers that window alone. So the
  automatic reports cover time without gaps or overlaps, even across days the server was off. Regulations §8
  asks for the automatic infection data "continuously / periodically" and names no period; the default of one
  day keeps the national picture a day old at most. People may also queue a report for any past period.

Every function takes ``now``; tests drive the clock and the random source (jitter) instead of sleeping.
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from garrison.server.audit.service import SYSTEM, Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.db import Database, utcnow
from garrison.server.errors import BadRequest, Conflict, NotFound
from garrison.server.reports import statistics
from garrison.server.settings import ServerSettings
from garrison.server.sharing import avreport, delivery
from garrison.server.sharing.models import DeliveryStatus, NationalAttempt, NationalDelivery

logger = logging.getLogger(__name__)

#: Where the automatic windows are counted from: midnight in Vietnam, 1 January 2000.
SCHEDULE_EPOCH = datetime(2000, 1, 1, tzinfo=statistics.ZONE).astimezone(UTC)
SEND_BATCH = 10  # items one pass sends at most (the rest wait for the next pass)


def as_utc(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes (stored in UTC) and compares them as text: always hand it UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def stale_after(settings: ServerSettings) -> timedelta:
    """How long a ``sending`` claim may last before its worker is taken for dead: twice the attempt's timeout and
    five minutes more, well beyond any live attempt."""
    return timedelta(seconds=2 * settings.national_timeout_seconds + 300)


# -- configuration ----------------------------------------------------------------------------------------------


def configured(settings: ServerSettings) -> bool:
    """Whether delivery is configured at all (the endpoint); the rest is checked when a report is made."""
    return bool(settings.national_endpoint_url)


def require_configuration(settings: ServerSettings) -> tuple[avreport.OrganisationInfo, bytes, bytes]:
    """The organisation, key and certificate to make a report with; :class:`Conflict` naming what to set (the
    export's own checks, plus the endpoint)."""
    if not configured(settings):
        raise Conflict("configure the national authority's address first: set GARRISON_NATIONAL_ENDPOINT_URL")
    info = avreport.organisation(settings)
    key_pem, cert_pem = avreport.signing_material(settings)
    return info, key_pem, cert_pem


# -- making and queueing a report ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Document:
    body: bytes
    machines: int
    infected: int


def make_document(
    session: Session, settings: ServerSettings, start: datetime, end: datetime, message_id: str, now: datetime
) -> Document:
    """The whole tree's signed AVReport for [start, end), carrying ``message_id`` as ``MessageHeader/DocumentId``
    (inside the signature, so the receiver can trust the id it de-duplicates on)."""
    info, key_pem, cert_pem = require_configuration(settings)
    root = avreport.build(
        session,
        Scope.whole_tree(),
        None,
        start,
        end,
        organisation=info,
        product=settings.national_product or "Garrison",
        now=now,
    )
    header = root.find(f"{{{avreport.NAMESPACE}}}edXMLHeader/{{{avreport.NAMESPACE}}}MessageHeader")
    etree.SubElement(header, f"{{{avreport.NAMESPACE}}}DocumentId").text = message_id
    try:
        signed = avreport.sign(root, key_pem, cert_pem)
    except ValueError as error:
        raise Conflict(f"cannot sign with the configured key and certificate: {error}") from error
    machines = len(signed.findall("./{*}edXMLBody/AVReport/OS/Machine"))
    infected = {m.get("name") for m in signed.findall("./{*}edXMLBody/AVReport/Malware/Machine")}
    return Document(avreport.serialize(signed), machines, len(infected))


def queue(
    session: Session,
    settings: ServerSettings,
    actor: Actor,
    *,
    start: datetime,
    end: datetime,
    now: datetime | None = None,
    schedule_key: str | None = None,
) -> NationalDelivery:
    """Make, sign and queue the whole tree's AVReport for [start, end), to be sent at once; audited as
    ``sharing.outbox_queue``. :class:`Conflict` when delivery is not configured, :class:`BadRequest` for a
    period that is empty, too long, or not over yet."""
    now = as_utc(now or utcnow())
    start, end = as_utc(start), as_utc(end)
    if not start < end:
        raise BadRequest("the period must end after it starts")
    if end > now:
        raise BadRequest("the period must be over: its end cannot be later than now")
    if end - start > statistics.MAX_PERIOD:
        raise BadRequest("the period is too long (at most three years)")
    message_id = str(uuid.uuid4())
    document = make_document(session, settings, start, end, message_id, now)
    item = NationalDelivery(
        message_id=message_id,
        schedule_key=schedule_key,
        period_start=start,
        period_end=end,
        document=document.body,
        document_sha256=hashlib.sha256(document.body).hexdigest(),
        machines=document.machines,
        infected=document.infected,
        automatic=schedule_key is not None,
        created_at=now,
        created_by=actor.user_id,
        created_by_name=actor.name,
        status=DeliveryStatus.QUEUED,
        next_attempt_at=now,
        attempts=0,
        round_attempts=0,
        last_error="",
    )
    session.add(item)
    session.flush()
    record(
        session,
        actor,
        "sharing.outbox_queue",
        "national_delivery",
        item.id,
        message_id=message_id,
        start=start.isoformat(),
        end=end.isoformat(),
        automatic=item.automatic,
        machines=document.machines,
        infected=document.infected,
    )
    return item


def window_end(now: datetime, hours: float) -> datetime:
    """The end of the last complete automatic window at ``now`` (windows of ``hours`` from
    :data:`SCHEDULE_EPOCH`)."""
    length = timedelta(hours=hours)
    return SCHEDULE_EPOCH + length * ((as_utc(now) - SCHEDULE_EPOCH) // length)


def due_period(session: Session, settings: ServerSettings, now: datetime) -> tuple[datetime, datetime] | None:
    """The period the next automatic report covers, if one is due at ``now`` (see the module's *Schedule*)."""
    hours = settings.national_send_hours
    if hours <= 0:
        return None
    end = window_end(now, hours)
    last = session.scalar(select(func.max(NationalDelivery.period_end)).where(NationalDelivery.automatic.is_(True)))
    if last is None:
        return end - timedelta(hours=hours), end
    last = as_utc(last)
    return (last, end) if last < end else None


def queue_due(database: Database, settings: ServerSettings, now: datetime | None = None) -> NationalDelivery | None:
    """Queue the automatic report due at ``now``, if any (None otherwise, or when another process queued it at
    the same moment, or when delivery is not configured: that is logged)."""
    now = as_utc(now or utcnow())
    if not configured(settings) or settings.national_send_hours <= 0:
        return None
    with database.session() as session:
        period = due_period(session, settings, now)
        if period is None:
            return None
        start, end = period
        try:
            with session.begin_nested():
                item = queue(
                    session, settings, SYSTEM, start=start, end=end, now=now, schedule_key=f"auto:{end.isoformat()}"
                )
        except IntegrityError:  # another server process queued this period first
            return None
        except Conflict as refused:
            logger.warning("the automatic national report is due but cannot be made: %s", refused.message)
            return None
        logger.info("queued the national report %s for %s – %s", item.message_id, start, end)
        return item


# -- claiming, sending, recording ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """An item a worker holds: what to send, and the token that proves the claim is still its own."""

    delivery_id: int
    token: str
    message_id: str
    document: bytes
    number: int  # the attempt's number (1, 2, ...)
    round_number: int  # the attempt's number since the item was queued or retried


def claim(database: Database, now: datetime, limit: int = SEND_BATCH) -> list[Claim]:
    """Claim up to ``limit`` due items (queued, next attempt not after ``now``), oldest first, and commit."""
    now = as_utc(now)
    claims: list[Claim] = []
    with database.session() as session:
        due = (
            select(NationalDelivery.id)
            .where(NationalDelivery.status == DeliveryStatus.QUEUED, NationalDelivery.next_attempt_at <= now)
            .order_by(NationalDelivery.next_attempt_at, NationalDelivery.id)
            .limit(limit)
        )
        for delivery_id in session.scalars(due).all():
            token = secrets.token_hex(16)
            # Conditional: another worker may have claimed it since the SELECT; then this matches no row.
            taken = session.execute(
                update(NationalDelivery)
                .where(
                    NationalDelivery.id == delivery_id,
                    NationalDelivery.status == DeliveryStatus.QUEUED,
                    NationalDelivery.next_attempt_at <= now,
                )
                .values(
                    status=DeliveryStatus.SENDING,
                    claim_token=token,
                    claimed_at=now,
                    attempts=NationalDelivery.attempts + 1,
                    round_attempts=NationalDelivery.round_attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
            if _rowcount(taken) != 1:
                continue
            row = session.execute(
                select(
                    NationalDelivery.message_id,
                    NationalDelivery.document,
                    NationalDelivery.attempts,
                    NationalDelivery.round_attempts,
                ).where(NationalDelivery.id == delivery_id)
            ).one()
            claims.append(Claim(delivery_id, token, row[0], bytes(row[1]), int(row[2]), int(row[3])))
    return claims


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def finish(
    database: Database,
    settings: ServerSettings,
    held: Claim,
    answer: delivery.Answer,
    started: datetime,
    now: datetime,
    rng: random.Random,
) -> DeliveryStatus | None:
    """Record ``answer`` as an attempt and move the item on; the status it now has, or None when the claim was
    lost meanwhile (the attempt is recorded all the same; a delivery is recorded whoever holds the claim)."""
    now = as_utc(now)
    verdict = delivery.judge(answer, now)
    owned = (NationalDelivery.id == held.delivery_id) & (NationalDelivery.claim_token == held.token)
    values: dict[str, Any] = {"claim_token": None, "claimed_at": None}
    if verdict.verdict is delivery.Verdict.DELIVERED:
        status = DeliveryStatus.DELIVERED
        condition = (NationalDelivery.id == held.delivery_id) & (NationalDelivery.status != DeliveryStatus.DELIVERED)
        values |= {"delivered_at": now, "next_attempt_at": None, "last_error": ""}
    elif verdict.verdict is delivery.Verdict.FAILED or held.round_number >= settings.national_max_attempts:
        status = DeliveryStatus.FAILED
        condition = owned & (NationalDelivery.status == DeliveryStatus.SENDING)
        reason = verdict.reason
        if verdict.verdict is delivery.Verdict.RETRY:
            reason = f"{reason} (gave up after {held.round_number} attempts)"
        values |= {"next_attempt_at": None, "last_error": reason}
    else:
        status = DeliveryStatus.QUEUED
        condition = owned & (NationalDelivery.status == DeliveryStatus.SENDING)
        wait = verdict.wait if verdict.wait is not None else delivery.backoff(held.round_number, rng)
        values |= {"next_attempt_at": now + wait, "last_error": verdict.reason}
    with database.session() as session:
        session.add(
            NationalAttempt(
                delivery_id=held.delivery_id,
                number=held.number,
                started_at=as_utc(started),
                duration_ms=answer.duration_ms,
                http_status=answer.status,
                answer=answer.body[: delivery.ANSWER_MAX],
                error=answer.error or ("" if status is DeliveryStatus.DELIVERED else verdict.reason),
                outcome=verdict.verdict.value if status is not DeliveryStatus.FAILED else "failed",
            )
        )
        changed = session.execute(
            update(NationalDelivery)
            .where(condition)
            .values(status=status, **values)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(changed) != 1:
            logger.warning("national report %s: the claim was lost before its answer was recorded", held.message_id)
            return None
    logger.info("national report %s, attempt %d: %s", held.message_id, held.number, verdict.reason)
    return status


def send_due(
    database: Database,
    settings: ServerSettings,
    now: datetime | None = None,
    *,
    rng: random.Random | None = None,
    limit: int = SEND_BATCH,
) -> list[DeliveryStatus | None]:
    """Claim the due items one by one (at most ``limit``) and send each once; what became of each. Nothing when
    delivery is not configured."""
    if not configured(settings):
        return []
    now = as_utc(now or utcnow())
    rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
    context = delivery.tls_context(settings.national_ca_file)
    results: list[DeliveryStatus | None] = []
    for _ in range(limit):
        # One claim at a time, just before its send: a claim taken for a whole batch would age while the items
        # before it are sent, and could look dead (stale_after) to another process.
        taken = claim(database, now, 1)
        if not taken:
            break
        held = taken[0]
        answer = delivery.post(
            settings.national_endpoint_url,
            held.document,
            held.message_id,
            timeout=settings.national_timeout_seconds,
            context=context,
            product=settings.national_product or "Garrison",
        )
        # The attempt is dated by the caller's clock plus what it took, so that tests driving ``now`` stay exact.
        finished = now + timedelta(milliseconds=answer.duration_ms)
        results.append(finish(database, settings, held, answer, now, finished, rng))
    return results


def recover(database: Database, settings: ServerSettings, now: datetime | None = None) -> int:
    """Put back in the queue the items whose ``sending`` claim is older than :func:`stale_after` (their worker
    died mid-send), recording the lost attempt; how many."""
    now = as_utc(now or utcnow())
    limit = now - stale_after(settings)
    recovered = 0
    with database.session() as session:
        stale = session.execute(
            select(NationalDelivery.id, NationalDelivery.claim_token, NationalDelivery.claimed_at,
                   NationalDelivery.attempts, NationalDelivery.round_attempts)
            .where(NationalDelivery.status == DeliveryStatus.SENDING, NationalDelivery.claimed_at < limit)
        ).all()  # fmt: skip
        for delivery_id, token, claimed_at, attempts, round_attempts in stale:
            out_of_attempts = round_attempts >= settings.national_max_attempts
            reason = "the server process sending it stopped before an answer was recorded"
            changed = session.execute(
                update(NationalDelivery)
                .where(NationalDelivery.id == delivery_id, NationalDelivery.claim_token == token)
                .values(
                    status=DeliveryStatus.FAILED if out_of_attempts else DeliveryStatus.QUEUED,
                    claim_token=None,
                    claimed_at=None,
                    next_attempt_at=None if out_of_attempts else now,
                    last_error=reason,
                )
                .execution_options(synchronize_session=False)
            )
            if _rowcount(changed) != 1:
                continue
            session.add(
                NationalAttempt(
                    delivery_id=delivery_id,
                    number=attempts,
                    started_at=as_utc(claimed_at or now),
                    duration_ms=0,
                    http_status=None,
                    answer="",
                    error=reason,
                    outcome="lost",
                )
            )
            recovered += 1
    if recovered:
        logger.warning("put %d national report(s) back in the queue: their sender stopped mid-send", recovered)
    return recovered


def maintain(database: Database, settings: ServerSettings) -> None:
    """The background pass: recover dead claims, queue the automatic report when due, send what is due."""
    now = utcnow()
    recover(database, settings, now)
    queue_due(database, settings, now)
    send_due(database, settings, now)


# -- what people do and see ------------------------------------------------------------------------------------


def retry(session: Session, actor: Actor, delivery_id: int, now: datetime | None = None) -> NationalDelivery:
    """Send a failed (or waiting) report again now, with a fresh count of attempts; audited as
    ``sharing.outbox_retry``. The document and its message id stay the same."""
    now = as_utc(now or utcnow())
    item = get(session, delivery_id)
    if item.status not in {DeliveryStatus.FAILED, DeliveryStatus.QUEUED}:
        raise Conflict(f"the report is {item.status.value}: only a failed or waiting report can be sent again")
    changed = session.execute(
        update(NationalDelivery)
        .where(NationalDelivery.id == delivery_id, NationalDelivery.status == item.status)
        .values(status=DeliveryStatus.QUEUED, next_attempt_at=now, round_attempts=0)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(changed) != 1:
        raise Conflict("the report changed meanwhile; reload and try again")
    record(
        session,
        actor,
        "sharing.outbox_retry",
        "national_delivery",
        delivery_id,
        message_id=item.message_id,
        was=item.status.value,
    )
    session.refresh(item)
    return item


def get(session: Session, delivery_id: int) -> NationalDelivery:
    item = session.scalars(
        select(NationalDelivery)
        .where(NationalDelivery.id == delivery_id)
        .options(selectinload(NationalDelivery.attempt_rows))
    ).one_or_none()
    if item is None:
        raise NotFound(f"no national report {delivery_id}")
    return item


def items(
    session: Session, *, status: DeliveryStatus | None = None, limit: int = 50, offset: int = 0
) -> Sequence[NationalDelivery]:
    """The outbox, newest first, with each item's attempts."""
    query = select(NationalDelivery).options(selectinload(NationalDelivery.attempt_rows))
    if status is not None:
        query = query.where(NationalDelivery.status == status)
    query = query.order_by(NationalDelivery.id.desc()).limit(limit).offset(offset)
    return session.scalars(query).all()


def count(session: Session, status: DeliveryStatus | None = None) -> int:
    query = select(func.count()).select_from(NationalDelivery)
    if status is not None:
        query = query.where(NationalDelivery.status == status)
    return int(session.scalar(query) or 0)
