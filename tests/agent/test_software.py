"""Agent software updates: staging refuses bad packages, boot picks and counts, healthy promotes, and real processes
started into a good and a broken build of this repository (the broken one is rolled back, the installed one runs)."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import garrison
from garrison.agent import software
from garrison.agent.software import MARKER, BootDecision, SoftwareError, StageLimits
from garrison.cli.main import cli

SOURCE = Path(garrison.__file__).parent
BASE = garrison.__version__
WHEEL_META = "Wheel-Version: 1.0\nGenerator: garrison-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def wheel(
    version: str,
    files: Mapping[str, bytes] | None = None,
    *,
    purelib: bool = True,
    extra: Sequence[zipfile.ZipInfo | tuple[zipfile.ZipInfo, bytes]] = (),
) -> bytes:
    """A wheel of ``files`` (default: a tiny garrison package) declaring ``version``."""
    members = dict(files) if files is not None else {"garrison/__init__.py": b""}
    members["garrison/__init__.py"] = f'"""test build"""\n\n__version__ = "{version}"\n'.encode()
    dist = f"garrison-{version}.dist-info"
    members[f"{dist}/WHEEL"] = (WHEEL_META if purelib else WHEEL_META.replace("true", "false")).encode()
    members[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: garrison\nVersion: {version}\n".encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for item in extra:
            info, data = item if isinstance(item, tuple) else (item, b"x")
            archive.writestr(info, data)
    return buffer.getvalue()


def repository_wheel(version: str, broken: str | None = None) -> bytes:
    """This repository's garrison package as a wheel of ``version``; ``broken``: a module that raises at import."""
    files = {
        "garrison/" + path.relative_to(SOURCE).as_posix(): path.read_bytes()
        for path in SOURCE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    if broken:
        files[broken] = b'raise RuntimeError("broken build")\n'
    return wheel(version, files)


def state(state_dir: Path) -> dict[str, Any]:
    return json.loads((state_dir / "software" / "boot.json").read_text())


class Exec:
    """Records the exec boot asks for instead of replacing the test process."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], dict[str, str]]] = []

    def __call__(self, path: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.calls.append((path, list(argv), dict(env)))


# -- staging ----------------------------------------------------------------------------------------------------


def _link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _duplicate() -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate this builds on purpose
        return wheel("1.0", extra=[(zipfile.ZipInfo("garrison/__init__.py"), b"")])


@pytest.mark.parametrize(
    ("package", "message"),
    [
        (lambda: wheel("1.0", {"garrison/../../evil.py": b""}), "not a plain relative name"),
        (lambda: wheel("1.0", {"/etc/cron.d/evil": b""}), "not a plain relative name"),
        (lambda: wheel("1.0", {"garrison\\..\\evil.py": b""}), "not a plain relative name"),
        (lambda: wheel("1.0", extra=[_link("garrison/link.py")]), "symbolic link"),
        (lambda: wheel("1.0", {"sitecustomize.py": b""}), "outside the garrison package"),
        (lambda: wheel("1.0", {"httpx/__init__.py": b""}), "outside the garrison package"),
        (lambda: wheel("2.0"), "garrison.__version__ is '2.0', not '1.0'"),
        (lambda: wheel("1.0", purelib=False), "not a pure-Python wheel"),
        (lambda: wheel("1.0", {"garrison/big.bin": b"\0" * 5000}), "unpacks to"),
        (lambda: b"this is not a zip", "not a readable wheel"),
        (_duplicate, "twice"),
    ],
    ids=[
        "traversal",
        "absolute",
        "backslashes",
        "symlink",
        "sitecustomize",
        "shadows-a-dependency",
        "version-mismatch",
        "not-purelib",
        "too-big",
        "not-a-zip",
        "duplicate",
    ],
)
def test_stage_refuses_bad_packages(tmp_path: Path, package: Callable[[], bytes], message: str) -> None:
    with pytest.raises(SoftwareError, match=message) as refused:
        software.stage(tmp_path, package(), "1.0", limits=StageLimits(max_total_size=4096), preflight=False)
    assert "Traceback" not in str(refused.value)
    assert not (tmp_path / "software" / "1.0").exists() and not (tmp_path / "software" / "1.0.partial").exists()
    recorded = state(tmp_path)
    assert recorded["trial"] is None and "1.0" in recorded["failed"]
    # A refused release is never taken again, even if it is offered again.
    assert software.refused(tmp_path, "1.0")
    with pytest.raises(SoftwareError, match="failed before"):
        software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)
    assert not (tmp_path / "/etc/cron.d/evil").exists() and not (tmp_path.parent / "evil.py").exists()


@pytest.mark.parametrize("version", ["../x", "", "1.0/..", ".hidden", "1.0.partial", "a" * 65])
def test_stage_refuses_versions_that_are_not_directory_names(tmp_path: Path, version: str) -> None:
    with pytest.raises(SoftwareError, match="not a version"):
        software.stage(tmp_path, wheel("1.0"), version, preflight=False)
    assert not (tmp_path / "software" / "boot.json").exists()


def test_stage_unpacks_and_records_a_trial(tmp_path: Path) -> None:
    path = software.stage(tmp_path, wheel("1.0", {"garrison/agent/x.py": b"X = 1\n"}), "1.0", preflight=False)
    assert path == tmp_path / "software" / "1.0"
    assert (path / "garrison" / "agent" / "x.py").read_bytes() == b"X = 1\n"
    assert (path / "garrison-1.0.dist-info" / "WHEEL").is_file()
    assert state(tmp_path)["trial"] == {
        "version": "1.0",
        "staged_at": state(tmp_path)["trial"]["staged_at"],
        "started_at": None,
        "attempts": 0,
    }
    # Staged again (a download repeated): unpacked afresh, still one trial.
    software.stage(tmp_path, wheel("1.0", {"garrison/agent/y.py": b""}), "1.0", preflight=False)
    assert (path / "garrison" / "agent" / "y.py").exists() and not (path / "garrison" / "agent" / "x.py").exists()
    assert sorted(p.name for p in (tmp_path / "software").iterdir()) == ["1.0", "boot.json"]


def test_stage_preflight_refuses_a_build_that_does_not_import(tmp_path: Path) -> None:
    broken = repository_wheel("0.1.0+broken", broken="garrison/cli/agent.py")
    with pytest.raises(SoftwareError, match="does not import: RuntimeError: broken build"):
        software.stage(tmp_path, broken, "0.1.0+broken")
    assert "broken build" in state(tmp_path)["failed"]["0.1.0+broken"]
    assert not (tmp_path / "software" / "0.1.0+broken").exists()


# -- boot decisions ---------------------------------------------------------------------------------------------


def _boot(
    state_dir: Path, environ: Mapping[str, str] | None = None, running: str = BASE, **kwargs: Any
) -> tuple[BootDecision, Exec]:
    run = Exec()
    decision = software.boot(
        state_dir, running, environ or {}, command=["python", "-m", "garrison.cli", "agent", "run"], exec_=run, **kwargs
    )
    return decision, run


def test_boot_without_state_runs_the_installed_version(tmp_path: Path) -> None:
    decision, run = _boot(tmp_path)
    assert (decision.action, decision.version, run.calls) == ("run", None, [])
    assert not (tmp_path / "software").exists()


def test_boot_trial_is_counted_then_rolled_back(tmp_path: Path) -> None:
    software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)
    version_dir = str(tmp_path / "software" / "1.0")

    # First start: into the trial, counted before the exec (a crash counts).
    decision, run = _boot(tmp_path, {"PYTHONPATH": "/opt/site", "PATH": "/bin"})
    assert (decision.action, decision.version) == ("exec", "1.0")
    (path, argv, env), *_ = run.calls
    assert argv == ["python", "-m", "garrison.cli", "agent", "run"] and path == "python"
    assert env["PYTHONPATH"] == os.pathsep.join([version_dir, "/opt/site"]) and env["PATH"] == "/bin"
    assert env[MARKER] == "1.0"
    assert state(tmp_path)["trial"]["attempts"] == 1 and state(tmp_path)["trial"]["started_at"]

    # The process it started calls boot too: it runs, it does not exec again or count.
    decision, run = _boot(tmp_path, env, running="1.0")
    assert (decision.action, decision.version, run.calls) == ("run", "1.0", [])
    assert state(tmp_path)["trial"]["attempts"] == 1

    # Second start (it crashed; the service manager starts the installed command afresh).
    decision, run = _boot(tmp_path, {"PYTHONPATH": "/opt/site"})
    assert decision.action == "exec" and state(tmp_path)["trial"]["attempts"] == 2

    # Third: no starts left: recorded as failed, the installed version runs in this process.
    decision, run = _boot(tmp_path, {"PYTHONPATH": "/opt/site"})
    assert (decision.action, decision.version, decision.rolled_back, run.calls) == ("run", None, "1.0", [])
    recorded = state(tmp_path)
    assert recorded["trial"] is None and "not healthy after 2 start(s)" in recorded["failed"]["1.0"]
    assert recorded["last_rollback"]["version"] == "1.0"
    assert software.report(tmp_path)["last_rollback"]["reason"] == recorded["failed"]["1.0"]
    with pytest.raises(SoftwareError, match="failed before"):
        software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)


def test_healthy_trial_becomes_current_and_old_versions_are_pruned(tmp_path: Path) -> None:
    software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)
    assert not software.mark_healthy(tmp_path, BASE)  # not the version on trial: nothing changes
    assert software.mark_healthy(tmp_path, "1.0")
    assert (state(tmp_path)["current"], state(tmp_path)["previous"], state(tmp_path)["trial"]) == ("1.0", None, None)

    # The next fresh start goes into the current version, without counting anything.
    decision, run = _boot(tmp_path)
    assert (decision.action, decision.version) == ("exec", "1.0") and run.calls[0][2][MARKER] == "1.0"

    for version in ("2.0", "3.0"):
        software.stage(tmp_path, wheel(version), version, preflight=False)
        assert software.mark_healthy(tmp_path, version)
    recorded = state(tmp_path)
    assert (recorded["current"], recorded["previous"]) == ("3.0", "2.0")
    assert sorted(p.name for p in (tmp_path / "software").iterdir()) == ["2.0", "3.0", "boot.json"]


def test_rollback_goes_to_the_current_version(tmp_path: Path) -> None:
    software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)
    software.mark_healthy(tmp_path, "1.0")
    software.stage(tmp_path, wheel("2.0"), "2.0", preflight=False)
    # 1.0 runs (started by boot) and asks for a restart into 2.0: it execs even though a marker is set.
    decision, run = _boot(tmp_path, {MARKER: "1.0", "PYTHONPATH": str(tmp_path / "software" / "1.0")}, restart=True)
    assert decision.version == "2.0"
    assert run.calls[0][2]["PYTHONPATH"] == str(tmp_path / "software" / "2.0")  # 1.0's entry taken out
    # 2.0 does not become healthy in time: the watch gives up; the restart goes back to 1.0.
    clock = iter([0.0, 10.0, 1000.0])
    watch = software.TrialWatch(tmp_path, "2.0", 900, clock=lambda: next(clock))
    assert watch.active and not watch.expired() and watch.expired()
    watch.give_up()
    decision, run = _boot(tmp_path, {MARKER: "2.0"}, restart=True)
    assert (decision.version, run.calls[0][2][MARKER]) == ("1.0", "1.0")
    assert "not healthy within 900 s" in state(tmp_path)["failed"]["2.0"]
    report = software.report(tmp_path, "1.0")
    assert report["running"] == "1.0" and report["current"] == "1.0" and report["last_rollback"]["version"] == "2.0"


def test_a_healthy_watch_promotes_once(tmp_path: Path) -> None:
    software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)
    other = software.TrialWatch(tmp_path, BASE)
    assert not other.active and not other.expired(1e9) and not other.healthy()
    watch = software.TrialWatch(tmp_path, "1.0", 5, clock=lambda: 0.0)
    assert watch.healthy() and not watch.active and not watch.expired(100.0) and not watch.healthy()
    assert state(tmp_path)["current"] == "1.0"


def test_boot_survives_a_damaged_state_and_missing_files(tmp_path: Path) -> None:
    software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)
    (tmp_path / "software" / "boot.json").write_text("{not json")
    decision, run = _boot(tmp_path)
    assert (decision.action, decision.version, run.calls) == ("run", None, [])
    assert (tmp_path / "software" / "boot.json.bad").exists()

    software.stage(tmp_path, wheel("2.0"), "2.0", preflight=False)
    (tmp_path / "software" / "2.0" / "garrison" / "__init__.py").unlink()
    decision, run = _boot(tmp_path)
    assert (decision.action, decision.rolled_back, run.calls) == ("run", "2.0", [])
    assert state(tmp_path)["trial"] is None and state(tmp_path)["last_rollback"]["reason"] == "its files are missing"


def test_a_version_that_does_not_load_is_given_up(tmp_path: Path) -> None:
    software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)
    _, run = _boot(tmp_path)
    # The process boot started imported another garrison (PYTHONPATH ignored): it runs, and 1.0 is not kept.
    decision, again = _boot(tmp_path, run.calls[0][2], running=BASE)
    assert (decision.action, decision.version, decision.rolled_back, again.calls) == ("run", None, "1.0", [])
    assert "was imported instead" in state(tmp_path)["failed"]["1.0"]


def test_a_failed_exec_gives_the_trial_up_and_runs_on(tmp_path: Path) -> None:
    software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)

    def cannot(path: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        raise PermissionError(13, "Permission denied")

    decision = software.boot(tmp_path, BASE, {}, command=["python"], exec_=cannot)
    assert (decision.action, decision.version) == ("run", None)
    assert "could not be started" in state(tmp_path)["failed"]["1.0"]


# -- garrison agent run -----------------------------------------------------------------------------------------


class Replaced(Exception):
    pass


def test_agent_run_boots_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)
    calls: list[tuple[str, list[str], dict[str, str]]] = []

    def execve(path: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        calls.append((path, list(argv), dict(env)))
        raise Replaced

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(sys, "argv", ["garrison", "agent", "run"])
    result = CliRunner().invoke(cli, ["agent", "run"], env={"GARRISON_AGENT_STATE_DIR": str(tmp_path)})
    assert isinstance(result.exception, Replaced), result.output  # before it looks for an enrollment
    _, argv, env = calls[0]
    assert argv == [sys.executable, "-P", "-m", "garrison.cli", "agent", "run"]
    assert env[MARKER] == "1.0" and env["PYTHONPATH"].startswith(str(tmp_path / "software" / "1.0"))


def test_agent_run_restarts_when_the_daemon_asks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import garrison.cli.agent as cli_agent

    class Daemon:
        def __init__(self, *args: object) -> None:
            pass

        def run(self, stop: object) -> None:
            software.stage(tmp_path, wheel("1.0"), "1.0", preflight=False)
            raise software.RestartRequested("version 1.0 is staged")

    class Client:
        def close(self) -> None:
            pass

    calls: list[dict[str, str]] = []

    def execve(path: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        calls.append(dict(env))
        raise OSError(8, "Exec format error")

    monkeypatch.setattr(cli_agent, "_identity", lambda settings: object())
    monkeypatch.setattr(cli_agent, "_client", lambda settings, identity: Client())
    monkeypatch.setattr(cli_agent, "Daemon", Daemon)
    monkeypatch.setattr(os, "execve", execve)
    result = CliRunner().invoke(cli, ["agent", "run"], env={"GARRISON_AGENT_STATE_DIR": str(tmp_path)})
    # boot found nothing to start at first; after the request it tried 1.0, could not exec, and exits for a restart.
    assert result.exit_code == software.RESTART_EXIT, result.output
    assert [env[MARKER] for env in calls] == ["1.0"]


# -- real processes ---------------------------------------------------------------------------------------------

ENTRY = """\
import os, sys
from pathlib import Path
import garrison
from garrison.agent import software
decision = software.boot(Path(sys.argv[1]), garrison.__version__, os.environ, command=[sys.executable, "-P", *sys.argv])
import garrison.cli.agent  # what `garrison agent run` imports next: the broken build fails here
print(garrison.__version__, garrison.__file__, decision.reason, sep="\\n")
"""


def _start(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", MARKER)}
    return subprocess.run(
        [sys.executable, "-P", str(entry), str(tmp_path / "state")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


def test_real_start_into_a_good_build(tmp_path: Path) -> None:
    version = "0.1.0+test1"
    staged = software.stage(tmp_path / "state", repository_wheel(version), version)  # with the real preflight
    done = _start(tmp_path)
    assert done.returncode == 0, done.stderr
    running, package, reason = done.stdout.splitlines()
    assert running == version and Path(package).is_relative_to(staged), done.stdout
    assert reason == f"started as version {version}"  # the decision of the process boot started
    assert state(tmp_path / "state")["trial"]["attempts"] == 1
    software.mark_healthy(tmp_path / "state", version)
    assert state(tmp_path / "state")["current"] == version


def test_real_start_into_a_broken_build_rolls_back(tmp_path: Path) -> None:
    version = "0.1.0+broken1"
    software.stage(
        tmp_path / "state", repository_wheel(version, broken="garrison/cli/agent.py"), version, preflight=False
    )
    # Each start is the service manager starting the installed command again after a crash.
    for attempt in (1, 2):
        done = _start(tmp_path)
        assert done.returncode != 0 and "RuntimeError: broken build" in done.stderr, done.stdout
        assert state(tmp_path / "state")["trial"]["attempts"] == attempt
    done = _start(tmp_path)
    assert done.returncode == 0, done.stderr
    running, package, reason = done.stdout.splitlines()
    assert running == BASE and Path(package).parent == SOURCE and f"version {version} rolled back" in reason
    recorded = state(tmp_path / "state")
    assert recorded["trial"] is None and "not healthy after 2 start(s)" in recorded["failed"][version]
    assert software.report(tmp_path / "state")["last_rollback"]["version"] == version
