"""Agent settings: ``GARRISON_AGENT_*`` environment variables, read once in the entry point and passed down.

Lists are given as JSON, e.g. ``GARRISON_AGENT_WATCH_PATHS='["/home", "/srv"]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from garrison import configfile

MiB = 1024 * 1024


def default_state_dir() -> Path:
    """``/var/lib/garrison-agent`` for root (``%ProgramData%\\Garrison Agent`` on Windows), else the user's state
    directory (``~/.local/state/garrison-agent``)."""
    if os.name == "nt":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "Garrison Agent"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/garrison-agent")
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "garrison-agent"


class AgentSettings(configfile.FileSettings):
    """Everything the agent needs to start.

    Attributes:
        state_dir: identity, outbox, quarantine and status files (mode 0700; keep it on a local disk).
        db_dir: signature databases; empty means ``state_dir/db``. With none there, only the built-in EICAR check
            applies.
        watch_paths: what ``garrison agent scan`` scans when given no path (and, later, real-time protection).
        exclude: glob patterns of paths not to scan.
        scan_jobs: processes scanning in parallel (1: in the agent's own process).
        heartbeat_seconds: how often to report until the server says otherwise.
        backoff_base, backoff_cap: reconnecting waits a random time between 0 and
            ``min(cap, base * 2**failures)`` seconds (exponential backoff with full jitter).
        retry_after_cap: the longest ``Retry-After`` honoured, in seconds.
        timeout: seconds for one request (connect, read, write each).
        batch_size: events per request (the server takes up to 1,000).
        outbox_max_bytes: bound on queued events; past it the oldest are dropped and counted.
        proxy: an HTTP(S) proxy URL; proxy environment variables are not used.
        allow_http: accept ``http://`` server URLs. Development only: credentials travel in clear text.
        scan_action: what scheduled and on-demand scans do with a detected file: ``report``, ``quarantine`` or
            ``delete`` (the policy decides once the server has sent one).
        realtime_paths: directories protected in real time (recursive); empty: real-time protection off.
        realtime_backend: how files are watched: ``fanotify`` (on write and on open; needs CAP_SYS_ADMIN),
            ``inotify`` (on write only) or ``auto`` (fanotify when it can start, else inotify, saying why).
        realtime_action: what real-time protection does with a detected file: ``report``, ``quarantine`` (into the
            encrypted store in ``state_dir/quarantine``) or ``delete``.
        realtime_queue: the most files waiting to be scanned; past it the oldest are dropped and counted.
        realtime_debounce_seconds: a file is scanned this long after it was last written (written many times in
            that window: scanned once).
        update_seconds: how often to look for signature and agent updates (the policy decides once the server has
            sent one); a newer release named in a heartbeat is fetched at once.
        update_backoff_base, update_backoff_cap: after a failed update the next try waits a random time between
            half and all of ``min(cap, base * 2**(failures - 1))`` seconds, and never less than a heartbeat.
    """

    model_config = SettingsConfigDict(env_prefix="GARRISON_AGENT_")

    CONFIG_VARIABLE = "GARRISON_AGENT_CONFIG"
    CONFIG_DEFAULT = "agent.toml"

    state_dir: Path = Field(default_factory=default_state_dir)
    db_dir: Path | None = None
    watch_paths: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    scan_jobs: int = Field(default=1, ge=1, le=64)
    heartbeat_seconds: float = Field(default=60.0, gt=0)
    backoff_base: float = Field(default=1.0, gt=0)
    backoff_cap: float = Field(default=300.0, gt=0)
    retry_after_cap: float = Field(default=3600.0, gt=0)
    timeout: float = Field(default=30.0, gt=0)
    batch_size: int = Field(default=500, ge=1, le=1000)
    outbox_max_bytes: int = Field(default=64 * MiB, ge=MiB)
    proxy: str | None = None
    allow_http: bool = False
    scan_action: Literal["report", "quarantine", "delete"] = "report"
    realtime_paths: list[str] = Field(default_factory=list)
    realtime_action: Literal["report", "quarantine", "delete"] = "report"
    realtime_queue: int = Field(default=10_000, ge=1, le=10_000_000)
    realtime_debounce_seconds: float = Field(default=0.5, ge=0, le=3600)
    realtime_backend: Literal["auto", "fanotify", "inotify"] = "auto"
    update_seconds: float = Field(default=3600.0, ge=60)
    update_backoff_base: float = Field(default=60.0, gt=0)
    update_backoff_cap: float = Field(default=6 * 3600.0, gt=0)

    @property
    def signature_dir(self) -> Path:
        return self.db_dir or self.state_dir / "db"

    @property
    def identity_path(self) -> Path:
        return self.state_dir / "identity.json"

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"

    @property
    def quarantine_dir(self) -> Path:
        return self.state_dir / "quarantine"

    @property
    def policy_path(self) -> Path:
        return self.state_dir / "policy.json"

    @property
    def schedule_path(self) -> Path:
        return self.state_dir / "schedule.json"

    @property
    def tasks_path(self) -> Path:
        return self.state_dir / "tasks.json"

    @property
    def updates_dir(self) -> Path:
        """Signed update metadata, installed signature releases and the update state."""
        return self.state_dir / "updates"

    @property
    def quarantine_key_path(self) -> Path:
        return self.state_dir / "quarantine.key"
