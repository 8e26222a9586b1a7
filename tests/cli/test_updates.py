"""``garrison server updates``: the repository's keys made, the root key moved offline, rotated, and refused once
replaced; releases published from the command line (the commands as an operator runs them, on SQLite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _updates(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GARRISON_")}
    return subprocess.run(
        [sys.executable, "-m", "garrison.cli", "server", "updates", *args],
        env=clean | {"GARRISON_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_keys_are_made_moved_offline_and_rotated(tmp_path: Path) -> None:
    data, offline = tmp_path / "data", tmp_path / "usb"
    made = _updates(data, "init", "--move-root-key", str(offline / "root.pem"))
    assert made.returncode == 0, made.stderr
    assert "root key moved" in made.stdout
    assert not (data / "update-keys" / "root.pem").exists()
    assert (offline / "root.pem").stat().st_mode & 0o777 == 0o600

    status = _updates(data, "status")
    assert status.returncode == 0, status.stderr
    assert "root key: offline" in status.stdout
    assert "timestamp  version 1" in status.stdout

    old, new = str(offline / "root.pem"), str(offline / "2.pem")
    rotated = _updates(data, "rotate", "--root-key", old, "--new-root-key", new)
    assert rotated.returncode == 0, rotated.stderr
    assert "root version 2 signed" in rotated.stdout
    refused = _updates(data, "rotate", "--root-key", str(offline / "root.pem"))
    assert refused.returncode == 1
    assert "not the root key of this repository" in refused.stderr
    assert "Traceback" not in refused.stderr

    nothing = _updates(data, "publish")
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing changed" in nothing.stdout
