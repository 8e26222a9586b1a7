"""Settings from a TOML file: below the environment, named by --config or the environment, errors in words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from garrison.agent.settings import AgentSettings
from garrison.configfile import MissingConfigFile
from garrison.server.settings import ServerSettings


def _garrison(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GARRISON_")}
    return subprocess.run(
        [sys.executable, "-m", "garrison.cli", *args],
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_file_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "server.toml"
    config.write_text('data_dir = "/srv/garrison"\nport = 9443\nheartbeat_seconds = 120\n')
    monkeypatch.setenv("GARRISON_CONFIG", str(config))
    monkeypatch.setenv("GARRISON_PORT", "10443")
    settings = ServerSettings()
    assert settings.data_dir == Path("/srv/garrison")
    assert settings.heartbeat_seconds == 120
    assert settings.port == 10443  # the environment over the file
    assert ServerSettings(port=11443).port == 11443  # and code (command-line options) over both


def test_agent_settings_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('state_dir = "/var/lib/ga"\nrealtime_paths = ["/home", "/srv"]\nrealtime_action = "quarantine"\n')
    monkeypatch.setenv("GARRISON_AGENT_CONFIG", str(config))
    settings = AgentSettings()
    assert settings.state_dir == Path("/var/lib/ga")
    assert settings.realtime_paths == ["/home", "/srv"]
    assert settings.realtime_action == "quarantine"


def test_a_named_file_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GARRISON_AGENT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(MissingConfigFile):
        AgentSettings()


def test_config_option_and_errors_in_words(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    answer = _garrison("agent", "--config", str(config), "status")
    assert str(tmp_path / "state") in answer.stdout + answer.stderr, answer.stderr
    assert "Traceback" not in answer.stderr

    config.write_text('scan_jobs = "many"\n')
    answer = _garrison("agent", "--config", str(config), "status")
    assert answer.returncode == 78
    assert "GARRISON_AGENT_SCAN_JOBS (or scan_jobs in the config file)" in answer.stderr
    assert "Traceback" not in answer.stderr

    answer = _garrison("server", "migrate", env={"GARRISON_PORT": "abc"})
    assert answer.returncode == 78
    assert "GARRISON_PORT" in answer.stderr and "'abc'" in answer.stderr
    assert "Traceback" not in answer.stderr

    answer = _garrison("agent", "status", env={"GARRISON_AGENT_CONFIG": str(tmp_path / "nope.toml")})
    assert answer.returncode == 78
    assert "not a file" in answer.stderr

    answer = _garrison("agent", "--config", str(tmp_path / "nope.toml"), "status")
    assert answer.returncode == 2  # click says the option's file does not exist
    assert "does not exist" in answer.stderr


def test_server_config_option(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    answer = _garrison("server", "--config", str(config), "migrate")
    assert answer.returncode == 0, answer.stderr
    assert (tmp_path / "data" / "garrison.db").exists()
