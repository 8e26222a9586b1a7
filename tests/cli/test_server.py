"""``garrison server`` commands as an operator runs them, on a fresh SQLite database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _run(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GARRISON_DATA_DIR": str(data_dir), "GARRISON_DATABASE_URL": ""}
    return subprocess.run(
        [sys.executable, "-m", "garrison.cli", "server", *args],
        capture_output=True, text=True, input=stdin, env=env, check=False, timeout=120,
    )  # fmt: skip


def test_migrate_and_create_admin(tmp_path: Path) -> None:
    migrated = _run(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "garrison.db").exists()
    created = _run(
        tmp_path, "create-admin", "--username", "Admin", "--password-stdin", stdin="a long enough passphrase\n"
    )
    assert created.returncode == 0, created.stderr
    assert "administrator 'admin' created" in created.stdout
    again = _run(
        tmp_path, "create-admin", "--username", "admin", "--password-stdin", stdin="a long enough passphrase\n"
    )
    assert again.returncode == 1
    assert "taken" in again.stderr and "Traceback" not in again.stderr
    weak = _run(tmp_path, "create-admin", "--username", "other", "--password-stdin", stdin="short\n")
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr
