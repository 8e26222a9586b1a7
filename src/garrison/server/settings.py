"""Server settings: ``GARRISON_*`` environment variables, read once in the entry point and passed down."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from garrison import configfile


def _default_data_dir() -> Path:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/garrison")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "garrison"


class ServerSettings(configfile.FileSettings):
    """Everything the server needs to start.

    Attributes:
        data_dir: where the SQLite database, the session secret and uploaded samples live.
        database_url: SQLAlchemy URL; empty means SQLite in ``data_dir`` (``postgresql+psycopg://...`` in
            production).
        host, port: where to listen.
        session_hours: how long a console login lasts without activity.
        login_attempts: failed logins allowed per account and per client address in ``login_window_minutes``.
        heartbeat_seconds: how often agents report (each answer adds ±10 % jitter), unless their policy says
            otherwise.
        password_time_cost, password_memory_kib: Argon2id cost (the defaults are RFC 9106's second choice).
        agent_max_inflight: agent requests answered at once; past it agents get 503 with ``Retry-After``.
        agent_retry_after_seconds: the ``Retry-After`` told to refused agents (±20 % jitter added).
        metrics_token: bearer token that ``/metrics`` requires; empty serves ``/metrics`` to loopback only.
        sample_max_bytes: the largest file a collect task may upload (kept encrypted in ``data_dir/samples``).
        updates_watch_dir: a directory whose new signature files are imported (for networks without internet:
            copy the files there); imported and refused files are moved to ``imported/`` and ``refused/``.
        updates_check_seconds: how often the server looks at the watched directory and upstream feeds,
            publishes a release when the sources changed, re-signs expiring metadata and promotes canary releases
            (0: never, for tests and for a server process that should leave this to the others).
        statistics_record_seconds: how often each unit's endpoints (online, protected, firewall, signatures) are
            recorded for the day, so past periods' statistics give the state at their end (0: never).
        updates_upstream_hours: how often each upstream source's URL is fetched (freshclam's default is every
            two hours).
        updates_accept_cud: accept ``.cud`` containers (ClamAV's unsigned format, made by ``sigtool --unsigned``
            for private mirrors). Off by default: nothing vouches for their content but the engine's checks.
        updates_keep_releases: how many signature releases stay downloadable.
        tuf_root_days, tuf_targets_days, tuf_snapshot_days, tuf_timestamp_hours: how long each role's signed
            metadata stays valid (the server re-signs targets, snapshot and timestamp before they expire; root
            needs the offline root key, and the console warns 30 days before).
        national_organ_id, national_organ_name: the agency's code (e.g. ``000.00.00.H35``) and name in the
            AVReport sent to the national authority (``MessageHeader/From``); the export refuses without them.
        national_organ_address, national_email, national_telephone, national_fax, national_website: the rest of
            ``MessageHeader/From`` (may stay empty).
        national_product: the ``AVReport name`` attribute, the anti-malware product reported.
        national_key_file, national_cert_file: the agency's RSA private key (unencrypted PEM, readable by the
            server only) and its X.509 certificate (PEM, optionally followed by its chain) that AVReport
            documents are signed with; the export refuses without them.
        national_endpoint_url: where the national outbox POSTs the signed AVReport (``https://`` only; empty: no
            delivery, only the download). The receiving authority changed in 2025: set it from its instructions.
        national_ca_file: the certificate authorities (PEM) the receiver's certificate must chain to; empty: the
            system's.
        national_send_hours: how often an AVReport is queued automatically, covering the time since the end of
            the last automatic report (0: never automatically; people queue one from the console or the API).
        national_timeout_seconds: how long one attempt may wait for the receiver (connect, send, answer).
        national_max_attempts: attempts before a report is marked failed (an administrator may retry it).
        national_outbox_seconds: how often the server queues due reports, sends due ones and recovers claims of
            a process that died mid-send (0: never, for tests and for processes that leave it to the others).
        national_allow_http: allow an ``http://`` endpoint on this machine (localhost, 127.0.0.1, ::1) only, for
            tests and a local receiver; never anywhere else.
        federation_push_seconds: how often a child server pushes its figures and submitted reports to its parent
            (``garrison server federation join``; 0: only by hand with ``garrison server federation push``). A
            parent shows a child as stale after three of the child's intervals without a push.
        federation_max_push_bytes: the largest push a parent accepts from a child (413 above it).
        alerts_check_seconds: how often the server evaluates the alert rules and sends the messages that are due
            (0: never, for tests and for processes that leave it to the others).
        alerts_smtp_host, alerts_smtp_port: the mail server alert e-mails go through (empty host: no e-mail; every
            e-mail attempt fails and is recorded as such).
        alerts_smtp_security: ``starttls`` (the default, port 587), ``ssl`` (port 465) or ``none`` (a relay on
            this network that offers no TLS).
        alerts_smtp_user, alerts_smtp_password: the mail account, if the server asks for one; the password from
            ``GARRISON_ALERTS_SMTP_PASSWORD`` or, better, the file ``alerts_smtp_password_file`` names (0600).
        alerts_smtp_from: the sender address of alert e-mails.
        alerts_timeout_seconds: how long one e-mail or webhook attempt may take.
        alerts_console_url: the console's address as people reach it (``https://garrison.example.gov.vn``): the
            links in messages start with it (empty: links are paths only).
        alerts_webhook_allow: networks (CIDR) webhooks may reach although they are this machine's or link-local
            addresses, which are refused otherwise (``["127.0.0.1/32"]`` for a relay on the server itself).
    """

    model_config = SettingsConfigDict(env_prefix="GARRISON_")

    CONFIG_VARIABLE = "GARRISON_CONFIG"
    CONFIG_DEFAULT = "server.toml"

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8443
    session_hours: float = 8.0
    login_attempts: int = 5
    login_window_minutes: float = 15.0
    heartbeat_seconds: float = 60.0
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=65536, ge=8)
    agent_max_inflight: int = Field(default=64, ge=1)
    agent_retry_after_seconds: float = Field(default=30.0, gt=0)
    metrics_token: str = Field(default="", repr=False)
    sample_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    updates_watch_dir: Path | None = None
    updates_check_seconds: float = Field(default=60.0, ge=0)
    updates_upstream_hours: float = Field(default=2.0, gt=0)
    updates_accept_cud: bool = False
    updates_keep_releases: int = Field(default=10, ge=2, le=1000)
    tuf_root_days: float = Field(default=365.0, gt=1)
    tuf_targets_days: float = Field(default=90.0, gt=0)
    tuf_snapshot_days: float = Field(default=7.0, gt=0)
    tuf_timestamp_hours: float = Field(default=24.0, gt=0)
    statistics_record_seconds: float = Field(default=3600.0, ge=0)
    national_organ_id: str = Field(default="", max_length=64)
    national_organ_name: str = Field(default="", max_length=255)
    national_organ_address: str = Field(default="", max_length=255)
    national_email: str = Field(default="", max_length=255)
    national_telephone: str = Field(default="", max_length=64)
    national_fax: str = Field(default="", max_length=64)
    national_website: str = Field(default="", max_length=255)
    national_product: str = Field(default="Garrison", max_length=128)
    national_key_file: Path | None = None
    national_cert_file: Path | None = None
    # National outbox: delivering the AVReport to the national authority (sharing/outbox.py).
    national_allow_http: bool = False
    national_endpoint_url: str = Field(default="", max_length=2048)
    national_ca_file: Path | None = None
    national_send_hours: float = Field(default=24.0, ge=0, le=24 * 366)
    national_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    national_max_attempts: int = Field(default=12, ge=1, le=100)
    national_outbox_seconds: float = Field(default=60.0, ge=0)
    # Federation: a child server reporting to a parent server (server/federation/).
    federation_push_seconds: float = Field(default=900.0, ge=0, le=7 * 86400)
    federation_max_push_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    # Alerts: rules per unit, messages by e-mail and webhook (server/alerts/).
    alerts_check_seconds: float = Field(default=60.0, ge=0)
    alerts_smtp_host: str = Field(default="", max_length=255)
    alerts_smtp_port: int = Field(default=587, ge=1, le=65535)
    alerts_smtp_security: Literal["starttls", "ssl", "none"] = "starttls"
    alerts_smtp_user: str = Field(default="", max_length=255)
    alerts_smtp_password: str = Field(default="", repr=False)
    alerts_smtp_password_file: Path | None = None
    alerts_smtp_from: str = Field(default="", max_length=255)
    alerts_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    alerts_console_url: str = Field(default="", max_length=255)
    alerts_webhook_allow: list[str] = Field(default_factory=list, max_length=64)

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'garrison.db'}"

    @field_validator("alerts_webhook_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            try:
                ipaddress.ip_network(net.strip(), strict=False)
            except ValueError:
                raise ValueError(f"not a network (CIDR): {net[:64]!r}") from None
        return [net.strip() for net in value]

    @field_validator("national_endpoint_url")
    @classmethod
    def _national_endpoint(cls, value: str, info: ValidationInfo) -> str:
        # The signed report names computers and their addresses: it travels over verified TLS, except to a
        # receiver on this very machine when national_allow_http (declared before this field) says so.
        url = value.strip()
        if not url:
            return url
        parts = urlsplit(url)
        local = (parts.hostname or "") in {"localhost", "127.0.0.1", "::1"}
        if parts.scheme == "http" and not (info.data.get("national_allow_http") and local):
            raise ValueError("must be https:// (http:// only to localhost, with national_allow_http)")
        if parts.scheme not in {"https", "http"} or not parts.hostname or parts.username or parts.password:
            raise ValueError("must be an https:// URL with a host name, without a user name or password")
        return url
