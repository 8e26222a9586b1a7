"""Sending: e-mail through the configured SMTP server, webhooks as a JSON POST; every attempt recorded.

A pass (:func:`deliver`) looks at every recipient: when records were raised since its previous message and its
quiet interval has passed, it gets one message holding all of them. The recipient is *claimed* in one short
transaction, the message is sent outside any transaction (a slow mail server must not hold the database), and the
outcome is recorded in another: on success the recipient's ``covered_until`` moves on; on failure nothing moves,
so the next pass sends the same records again (with whatever was raised meanwhile). One recipient failing does
not stop the others. A claim older than ``CLAIM`` (a process that died while sending) is taken over.

Why not apprise: it logs a webhook's full URL and the payload at debug level, reads a URL's query string as its own
options, posts a fixed JSON shape of its own, needs the SMTP password inside a URL, and says only whether a send
worked, not why; smtplib and httpx2 do what is needed in a few lines.

Secrets: webhook URLs are decrypted only to send; errors are scrubbed of them before they are logged or stored;
the SMTP password is never logged.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

import httpx2
from cryptography.exceptions import InvalidTag
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from garrison import __version__
from garrison.server.agents.service import aware
from garrison.server.alerts import digest, rules, vault
from garrison.server.alerts.models import AlertDelivery, AlertRecipient, AlertRecord, AlertRule, Channel
from garrison.server.audit.service import Actor, record
from garrison.server.auth.scope import Scope
from garrison.server.db import Database
from garrison.server.errors import BadRequest, Forbidden
from garrison.server.settings import ServerSettings
from garrison.server.units.models import Unit

logger = logging.getLogger(__name__)

#: A recipient claimed longer ago than this is free again (its sender died); longer than any attempt takes.
CLAIM = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for one recipient, ready to send."""

    recipient_id: int
    rule_id: int
    channel: str
    target: str  # the address, or the masked URL: what may be shown and logged
    message: digest.Message
    records: int
    covers_from: datetime | None
    covers_until: datetime | None
    url: str = field(default="", repr=False)  # a webhook's real URL: never shown, never logged
    test: bool = False


# -- sending ------------------------------------------------------------------------------------------------------


def _password(settings: ServerSettings) -> str:
    if settings.alerts_smtp_password_file is not None:
        return settings.alerts_smtp_password_file.read_text(encoding="utf-8").strip()
    return settings.alerts_smtp_password


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    if (user + password).isascii():
        smtp.login(user, password)
        return
    # smtplib encodes credentials as ASCII; AUTH PLAIN (RFC 4616) carries UTF-8, so a Vietnamese password works.
    smtp.ehlo_or_helo_if_needed()
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    code, reply = smtp.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def send_email(settings: ServerSettings, address: str, message: digest.Message) -> None:
    if not settings.alerts_smtp_host or not settings.alerts_smtp_from:
        raise OSError("no mail server is configured (alerts_smtp_host, alerts_smtp_from)")
    # MIMEText and Header rather than EmailMessage: the latter's header folding drops the space between two
    # encoded words, which Vietnamese subjects always need ("mã độc" arrived as "mãđộc").
    mail = MIMEText(message.text, "plain", "utf-8")
    mail["Subject"] = Header(message.subject, "utf-8")  # type: ignore[assignment]  # typeshed: str only
    mail["From"] = settings.alerts_smtp_from
    mail["To"] = address
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=settings.alerts_smtp_from.rpartition("@")[2] or None)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies back to the server
    mail["X-Mailer"] = f"Garrison {__version__}"
    timeout = settings.alerts_timeout_seconds
    host, port = settings.alerts_smtp_host, settings.alerts_smtp_port
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.alerts_smtp_security == "ssl":
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    with smtp:
        if settings.alerts_smtp_security == "starttls":
            smtp.starttls(context=context)
        if settings.alerts_smtp_user:
            _login(smtp, settings.alerts_smtp_user, _password(settings))
        smtp.send_message(mail)


class _Quiet(logging.Filter):
    """Drops the HTTP client's own log lines while this thread sends to a webhook: httpx2 logs every request's
    full URL at INFO, and a webhook's URL is a secret."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "sending", False)


_QUIET = _Quiet()
for _name in ("httpx2", "httpcore2"):
    logging.getLogger(_name).addFilter(_QUIET)


def check_destination(settings: ServerSettings, url: str) -> None:
    """Refuse a webhook whose host is this machine, a link-local address (a cloud's metadata service), or
    multicast/reserved space, unless ``alerts_webhook_allow`` lists its network: a unit administrator writes webhook
    addresses, and must not turn the server into a way to reach services only the server can reach. Private networks
    (10/8, 172.16/12, 192.168/16, fc00::/7) are allowed: an agency's chat server usually lives there.

    The name is resolved here and again by the HTTP client; a name that changes its answer in between (DNS
    rebinding by someone who controls the name's DNS) is not caught."""
    host = urlsplit(url).hostname or ""
    port = urlsplit(url).port or (443 if url.startswith("https") else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"the webhook's host name could not be resolved ({exc.strerror})") from None
    allowed = [ipaddress.ip_network(net, strict=False) for net in settings.alerts_webhook_allow]
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        forbidden = (
            address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_unspecified
            or (address.is_reserved and not address.is_private)
        )
        if forbidden and not any(address in net for net in allowed if net.version == address.version):
            raise OSError(
                f"the webhook's host resolves to {address}, an address of this machine or of its local link;"
                " list its network in GARRISON_ALERTS_WEBHOOK_ALLOW if that is intended"
            )


def send_webhook(settings: ServerSettings, url: str, message: digest.Message) -> None:
    check_destination(settings, url)
    _QUIET.local.sending = True
    try:
        answer = _post(settings, url, message)
    finally:
        _QUIET.local.sending = False
    if not 200 <= answer.status_code < 300:
        raise OSError(f"the webhook answered HTTP {answer.status_code}")


def _post(settings: ServerSettings, url: str, message: digest.Message) -> httpx2.Response:
    return httpx2.post(
        url,
        json=message.payload,
        timeout=settings.alerts_timeout_seconds,
        follow_redirects=False,  # a redirect could carry the message (and the URL's secret) elsewhere
        headers={"User-Agent": f"Garrison/{__version__}"},
    )


def send(settings: ServerSettings, outgoing: Outgoing) -> str:
    """Send one message; returns the error in words ('' when sent), scrubbed of secrets."""
    try:
        if outgoing.channel == Channel.EMAIL:
            send_email(settings, outgoing.target, outgoing.message)
        elif not outgoing.url:
            raise OSError(
                f"the saved address cannot be read: {vault.KEY_NAME} is missing or not the one it was saved with"
            )
        else:
            send_webhook(settings, outgoing.url, outgoing.message)
    except Exception as exc:  # whatever it was, it concerns this recipient only: record it, go on with the others
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if outgoing.url:
            error = vault.scrub(error, outgoing.url)
        try:
            password = _password(settings) if settings.alerts_smtp_user else ""
        except OSError:
            password = ""  # the file is missing: the error says so, and there is nothing to hide
        if password:
            error = error.replace(password, "…")
        logger.warning("alert message to %s failed: %s", outgoing.target, error)
        return error[:1000]
    return ""


# -- a pass -------------------------------------------------------------------------------------------------------


def _unit_names(session: Session, rules_: Sequence[AlertRule]) -> dict[int, str]:
    ids = {rule.unit_id for rule in rules_}
    return dict(session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(ids))).all())


def _target(settings: ServerSettings, recipient: AlertRecipient) -> tuple[str, str]:
    """What to show of a recipient, and a webhook's real URL ('' for e-mail)."""
    if recipient.channel == Channel.WEBHOOK and recipient.secret is not None:
        try:
            return recipient.address, vault.unseal(settings.data_dir, recipient.secret)
        except (OSError, ValueError, InvalidTag, RuntimeError):
            return recipient.address, ""  # sending says why it cannot (see send)
    return recipient.address, ""


def claim(session: Session, settings: ServerSettings, now: datetime) -> list[Outgoing]:
    """The messages due at ``now``, their recipients claimed (the caller commits before sending)."""
    pairs = session.execute(
        select(AlertRecipient, AlertRule)
        .join(AlertRule, AlertRule.id == AlertRecipient.rule_id)
        .where(or_(AlertRecipient.claimed_at.is_(None), AlertRecipient.claimed_at < now - CLAIM))
        .order_by(AlertRecipient.id)
        .with_for_update(of=AlertRecipient, skip_locked=True)
    ).all()
    names = _unit_names(session, [rule for _, rule in pairs])
    found: dict[tuple[int, datetime], list[AlertRecord]] = {}
    due = []
    for recipient, rule in pairs:
        quiet = timedelta(minutes=rule.quiet_minutes)
        if recipient.last_sent_at is not None and now - aware(recipient.last_sent_at) < quiet:
            continue  # the quiet interval holds: what was raised meanwhile waits for the next message
        start = aware(recipient.covered_until)
        key = (rule.id, start)
        if key not in found:
            found[key] = list(
                session.scalars(
                    select(AlertRecord).where(
                        AlertRecord.rule_id == rule.id, AlertRecord.raised_at > start, AlertRecord.raised_at <= now
                    )
                )
            )
        records = found[key]
        if not records:
            continue
        target, url = _target(settings, recipient)
        message = digest.build(rule, names.get(rule.unit_id, ""), records, start, now, settings.alerts_console_url)
        recipient.claimed_at = now
        due.append(
            Outgoing(recipient.id, rule.id, recipient.channel, target, message, len(records), start, now, url=url)
        )
    session.flush()
    return due


def finish(session: Session, outgoing: Outgoing, error: str, now: datetime) -> AlertDelivery:
    """Record one attempt; on success the recipient has received everything up to the message's end."""
    recipient = session.get(AlertRecipient, outgoing.recipient_id)
    if recipient is not None and not outgoing.test:
        recipient.claimed_at = None
        if not error:
            recipient.covered_until = outgoing.covers_until or now
            recipient.last_sent_at = now
    delivery = AlertDelivery(
        rule_id=outgoing.rule_id,
        recipient_id=recipient.id if recipient is not None else None,
        channel=outgoing.channel,
        target=outgoing.target,
        at=now,
        ok=not error,
        error=error,
        subject=outgoing.message.subject,
        records=outgoing.records,
        covers_from=outgoing.covers_from,
        covers_until=outgoing.covers_until,
        test=outgoing.test,
    )
    session.add(delivery)
    session.flush()
    return delivery


def deliver(database: Database, settings: ServerSettings, now: datetime) -> list[AlertDelivery]:
    """Send every message due at ``now``: claim, send, record (see the module's documentation)."""
    with database.session() as session:
        due = claim(session, settings, now)
    done = []
    for outgoing in due:
        error = send(settings, outgoing)
        with database.session() as session:
            done.append(finish(session, outgoing, error, now))
    return done


# -- a test message -------------------------------------------------------------------------------------------------


def send_trial(
    session: Session, scope: Scope, actor: Actor, settings: ServerSettings, unit_id: int, now: datetime
) -> list[AlertDelivery]:
    """A test message to every recipient of the unit's rule, now, outside the grouping and the quiet interval
    (what the recipients are owed is not touched). Audited; each attempt recorded."""
    if not scope.writable:
        raise Forbidden("read-only access")
    unit, rule = rules.rule_of(session, scope, unit_id)
    if rule is None:
        raise BadRequest("this unit has no alert rule yet; save one first")
    recipients = rules.recipients(session, rule)
    if not recipients:
        raise BadRequest("the rule has no recipients")
    message = digest.trial_message(rule, unit.name, now, settings.alerts_console_url)
    done = []
    for recipient in recipients:
        target, url = _target(settings, recipient)
        outgoing = Outgoing(recipient.id, rule.id, recipient.channel, target, message, 0, None, None, url, test=True)
        done.append(finish(session, outgoing, send(settings, outgoing), now))
    record(
        session,
        actor,
        "alerts.test",
        "alert_rule",
        rule.id,
        unit_id=unit.id,
        sent=sum(d.ok for d in done),
        failed=sum(not d.ok for d in done),
    )
    return done
