"""Command-line settings, read from ``GARRISON_*`` environment variables in the entry point."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    if os.geteuid() == 0 if hasattr(os, "geteuid") else False:
        return Path("/var/lib/garrison")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "garrison"


def _default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "garrison"


class CliSettings(BaseSettings):
    """Where the command line finds signature databases and keeps their compiled cache.

    ``GARRISON_DB_DIR`` overrides the database directory (default ``/var/lib/garrison/db`` for root,
    ``~/.local/share/garrison/db`` otherwise); ``GARRISON_CACHE_DIR`` the cache (default ``~/.cache/garrison``).
    """

    model_config = SettingsConfigDict(env_prefix="GARRISON_")

    db_dir: Path = _default_data_dir() / "db"
    cache_dir: Path = _default_cache_dir()
