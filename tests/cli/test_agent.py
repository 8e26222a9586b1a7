"""``garrison agent`` commands without a server: usage errors say what to fix; scans queue what they find."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from garrison.agent.outbox import Outbox
from garrison.cli.main import cli
from garrison.engine.eicar import EICAR

TOKEN = "gse_" + "b" * 40
PIN = "AB:" * 31 + "AB"


def _agent(state_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["agent", *args], env={"GARRISON_AGENT_STATE_DIR": str(state_dir)})


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--server", "https://127.0.0.1:1", "--token", TOKEN], 2, "--fingerprint"),
        (
            ["--server", "https://127.0.0.1:1", "--token", TOKEN, "--fingerprint", PIN, "--ca-file", __file__],
            2,
            "not both",
        ),
        (["--server", "http://127.0.0.1:1", "--token", TOKEN, "--fingerprint", PIN], 1, "HTTPS only"),
        (["--server", "https://127.0.0.1:1", "--token", TOKEN, "--fingerprint", "abc"], 1, "not a SHA-256 fingerprint"),
        (["--server", "https://127.0.0.1:1", "--token", "short", "--fingerprint", PIN], 2, "not an enrollment token"),
        (["--server", "https://127.0.0.1:1", "--token", TOKEN, "--fingerprint", PIN], 1, "cannot reach the server"),
    ],
)
def test_enroll_errors(tmp_path: Path, args: list[str], status: int, message: str) -> None:
    result = _agent(tmp_path, "enroll", *args)
    assert result.exit_code == status, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "identity.json").exists()


def test_not_enrolled(tmp_path: Path) -> None:
    status = _agent(tmp_path, "status")
    assert status.exit_code == 1 and "not enrolled" in status.output and "last scan: never" in status.output
    run = _agent(tmp_path, "run")
    assert run.exit_code == 1 and "garrison agent enroll" in run.output


def test_scan_queues_detections_until_enrolled(tmp_path: Path) -> None:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "eicar.com").write_bytes(EICAR)
    (folder / "clean.txt").write_text("clean")
    state = tmp_path / "state"
    result = _agent(state, "scan", str(folder))
    assert result.exit_code == 1, result.output
    assert "eicar.com: Eicar-Test-Signature FOUND" in result.output
    assert "1 detection(s) queued" in result.output and "not enrolled" in result.output
    with Outbox(state / "outbox.sqlite3") as outbox:
        [event] = outbox.batch()
    assert event.kind == "detection" and event.payload["path"].endswith("eicar.com")
    status = _agent(state, "status")
    assert "1 event(s) waiting" in status.output and "1 detection(s)" in status.output
    clean = _agent(state, "scan", str(folder / "clean.txt"))
    assert clean.exit_code == 0 and "0 infected" in clean.output


def test_scan_needs_paths(tmp_path: Path) -> None:
    result = _agent(tmp_path, "scan")
    assert result.exit_code == 2 and "GARRISON_AGENT_WATCH_PATHS" in result.output
