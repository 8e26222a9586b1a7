"""Server settings: ``GARRISON_*`` environment variables, read once in the entry point and passed down."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
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

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'garrison.db'}"
