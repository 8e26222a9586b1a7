"""The agent's own software: stage a verified release, start it on trial, keep it if it comes up healthy, roll back
if it does not.

This module never downloads and never verifies signatures: it is handed the bytes of a wheel that the updater has
already verified (TUF) and the version string the repository gave for it. What it guarantees is that an endpoint is
never left without a working agent:

- **A/B with boot counting.** Each release is extracted into ``STATE_DIR/software/<version>/`` and run by putting
  that directory first on ``PYTHONPATH`` (a pure-Python wheel needs nothing else; the installed environment gives
  the dependencies). The installed package (the *base*) is never modified, so it is always there to fall back to.
- **The boot decision is made by the installed code.** The service manager starts ``garrison agent run`` with a
  clean environment, so :func:`boot` runs from the base package on every fresh start and picks what to ``exec``
  into: a version on trial (at most :data:`MAX_ATTEMPTS` starts), else the last healthy version, else itself. A
  staged version that crashes at import therefore cannot stop its own rollback.
- **Healthy means it worked**: the daemon calls :meth:`TrialWatch.healthy` after its first successful heartbeat with
  the engine loaded; only then does the trial become ``current``. A trial that does not get there in time gives up
  (:meth:`TrialWatch.give_up`), and one that keeps crashing runs out of starts; either way it is recorded in
  ``failed`` with the reason and never installed or tried again automatically (re-downloading a broken release
  forever is a known failure of other products).

The state is one small JSON file, ``software/boot.json``, replaced atomically::

    {"format": 1, "current": "0.2.0" | null, "previous": "0.1.0" | null,
     "trial": {"version", "staged_at", "started_at", "attempts"} | null,
     "failed": {"0.3.0": "reason"}, "last_rollback": {"version", "reason", "at"} | null}

Its format must stay readable by older installed versions: they make the boot decision.
"""

from __future__ import annotations

import ast
import contextlib
import email.parser
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any, Literal

from garrison import __version__
from garrison.atomicfile import write_atomic

log = logging.getLogger(__name__)

#: Exit status of ``garrison agent run`` when it wants to be started again (into another version) and could not
#: ``exec`` by itself (EX_TEMPFAIL); the systemd unit restarts on it.
RESTART_EXIT = 75
#: Set by :func:`boot` in the environment of the process it starts: the version it meant to start, or
#: :data:`INSTALLED`. A process that has it does not ``exec`` again at start (no exec loops).
MARKER = "GARRISON_AGENT_BOOTED"
INSTALLED = "installed"
#: Starts a version on trial gets before it is declared failed (a crash at start, a hang the watch ended).
MAX_ATTEMPTS = 2
#: Seconds a version on trial has, from its start, to become healthy (see :class:`TrialWatch`).
TRIAL_DEADLINE = 900.0
#: Modules the new version must import before it is allowed to run (a missing dependency, a syntax error).
PREFLIGHT_MODULES = ("garrison.cli.main", "garrison.cli.agent", "garrison.agent.daemon", "garrison.agent.software")
PREFLIGHT_TIMEOUT = 120.0
FORMAT = 1
#: ``failed`` keeps this many versions (the oldest are forgotten).
MAX_FAILED = 50

# Versions become directory names: PEP 440 characters only, no separators, never "." or "..".
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+!_-]{0,63}")
_DIST_INFO = re.compile(r"garrison-[0-9A-Za-z.+!_-]+\.dist-info")
_PARTIAL = ".partial"


class SoftwareError(Exception):
    """A release that cannot be staged (a bad package, a version that failed before, a disk problem)."""


class RestartRequested(Exception):
    """Raised out of the daemon's loop to start again into the version :func:`boot` picks (``garrison agent run``
    catches it, cleans up and calls ``boot(..., restart=True)``)."""


@dataclass(frozen=True)
class StageLimits:
    """Bounds on a release package (the updater verified its hashes, but a bug upstream must not fill the disk)."""

    max_wheel_bytes: int = 64 * 1024 * 1024
    max_members: int = 5_000
    max_total_size: int = 256 * 1024 * 1024
    max_member_size: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class BootDecision:
    """What :func:`boot` decided.

    Attributes:
        action: ``run`` (go on in this process) or ``exec`` (this process was, or was to be, replaced).
        version: the version chosen; ``None`` for the installed package.
        path: its directory under ``software/`` (``None`` for the installed package).
        reason: the decision in words, for the log.
        rolled_back: a version on trial that was given up at this start, if any.
    """

    action: Literal["run", "exec"]
    version: str | None
    path: Path | None
    reason: str
    rolled_back: str | None = None


# -- the state file ---------------------------------------------------------------------------------------------


def software_dir(state_dir: Path) -> Path:
    return Path(state_dir).absolute() / "software"


def _now_iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")


def _empty() -> dict[str, Any]:
    return {"format": FORMAT, "current": None, "previous": None, "trial": None, "failed": {}, "last_rollback": None}


def _valid_version(value: object) -> bool:
    return isinstance(value, str) and _VERSION.fullmatch(value) is not None and not value.endswith(_PARTIAL)


def _check_state(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    state = _empty()
    for key in ("current", "previous"):
        value = data.get(key)
        if value is not None and not _valid_version(value):
            raise ValueError(f"{key} is not a version: {value!r}")
        state[key] = value
    trial = data.get("trial")
    if trial is not None:
        if not (isinstance(trial, dict) and _valid_version(trial.get("version"))):
            raise ValueError(f"trial is not valid: {trial!r}")
        attempts = trial.get("attempts", 0)
        if not isinstance(attempts, int) or attempts < 0:
            raise ValueError(f"trial attempts is not a count: {attempts!r}")
        state["trial"] = {
            "version": trial["version"],
            "staged_at": trial.get("staged_at"),
            "started_at": trial.get("started_at"),
            "attempts": attempts,
        }
    failed = data.get("failed") or {}
    if not isinstance(failed, dict):
        raise ValueError("failed is not an object")
    state["failed"] = {str(version): str(reason) for version, reason in failed.items()}
    last = data.get("last_rollback")
    state["last_rollback"] = last if isinstance(last, dict) else None
    return state


def load_state(state_dir: Path) -> dict[str, Any]:
    """The boot state (:func:`_empty` when there is none). A damaged file is moved aside to ``boot.json.bad`` and
    treated as empty: the agent then runs the installed package, which always works."""
    path = software_dir(state_dir) / "boot.json"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return _empty()
    try:
        return _check_state(json.loads(raw))
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        log.error("%s is damaged (%s); it is kept as boot.json.bad and the installed version runs", path, exc)
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name("boot.json.bad"))
        return _empty()


def _save(state_dir: Path, state: dict[str, Any]) -> None:
    failed: dict[str, str] = state["failed"]
    while len(failed) > MAX_FAILED:
        del failed[next(iter(failed))]
    write_atomic(software_dir(state_dir) / "boot.json", json.dumps(state, indent=2).encode() + b"\n", 0o644)


def _usable(state_dir: Path, version: str | None) -> bool:
    return version is not None and (software_dir(state_dir) / version / "garrison" / "__init__.py").is_file()


def _fail(state: dict[str, Any], version: str, reason: str, now: float) -> None:
    state["failed"].pop(version, None)  # re-inserted last: the newest failures are kept
    state["failed"][version] = reason
    state["last_rollback"] = {"version": version, "reason": reason, "at": _now_iso(now)}
    if state["trial"] is not None and state["trial"]["version"] == version:
        state["trial"] = None
    log.error("agent version %s is rolled back and will not be tried again: %s", version, reason)


# -- staging ----------------------------------------------------------------------------------------------------


def refused(state_dir: Path, version: str) -> str | None:
    """Why ``version`` will not be staged (it failed before), or ``None``. The updater asks before downloading."""
    reason: str | None = load_state(state_dir)["failed"].get(version)
    return reason


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\\" in name or "\0" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "is not a plain relative name"
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "is not a plain relative name"
    if info.flag_bits & 0x1:
        return "is encrypted"
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is a symbolic link" if kind == stat.S_IFLNK else "is not a regular file"
    if parts[0] != "garrison" and not _DIST_INFO.fullmatch(parts[0]):
        # Anything else on PYTHONPATH could shadow a dependency, or run at start-up (sitecustomize.py).
        return "is outside the garrison package and its .dist-info"
    return None


def _declared_version(source: bytes) -> str | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        value = getattr(node, "value", None)
        if (
            any(isinstance(target, ast.Name) and target.id == "__version__" for target in targets)
            and isinstance(value, ast.Constant)
            and isinstance(value.value, str)
        ):
            return value.value
    return None


def _check_wheel(archive: zipfile.ZipFile, version: str, limits: StageLimits) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise SoftwareError(f"the package has {len(members)} members, more than {limits.max_members}")
    seen: set[str] = set()
    total = 0
    dist_infos: set[str] = set()
    for info in members:
        problem = _member_problem(info)
        if problem:
            raise SoftwareError(f"the package's member {info.filename!r} {problem}")
        name = info.filename.rstrip("/")
        if name in seen:
            raise SoftwareError(f"the package holds {name!r} twice")
        seen.add(name)
        if info.file_size > limits.max_member_size:
            raise SoftwareError(f"the package's member {name!r} is {info.file_size} bytes, over the limit")
        total += info.file_size
        top = name.split("/")[0]
        if top != "garrison":
            dist_infos.add(top)
    if total > limits.max_total_size:
        raise SoftwareError(f"the package unpacks to {total} bytes, more than {limits.max_total_size}")
    if "garrison/__init__.py" not in seen:
        raise SoftwareError("the package has no garrison/__init__.py")
    if len(dist_infos) != 1:
        raise SoftwareError(f"the package needs exactly one garrison-*.dist-info, it has {sorted(dist_infos)}")
    dist_info = dist_infos.pop()
    declared = _declared_version(archive.read("garrison/__init__.py"))
    if declared != version:
        raise SoftwareError(f"the package's garrison.__version__ is {declared!r}, not {version!r}")
    if f"{dist_info}/WHEEL" not in seen:
        raise SoftwareError(f"the package has no {dist_info}/WHEEL")
    wheel = email.parser.HeaderParser().parsestr(archive.read(f"{dist_info}/WHEEL").decode("utf-8", "replace"))
    if (wheel.get("Root-Is-Purelib") or "").strip().lower() != "true":
        raise SoftwareError("the package is not a pure-Python wheel (Root-Is-Purelib is not true)")
    return members


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], into: Path, limits: StageLimits) -> None:
    into.mkdir(mode=0o755)
    written = 0
    for info in members:
        target = into.joinpath(*info.filename.rstrip("/").split("/"))
        if info.is_dir():
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
            continue
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        # O_EXCL | O_NOFOLLOW: never write through something already there (names were checked, this is a backstop).
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as out, archive.open(info) as source:
            while chunk := source.read(1024 * 1024):
                written += len(chunk)
                if written > limits.max_total_size:
                    raise SoftwareError("the package unpacks to more than it declares")
                out.write(chunk)
            out.flush()
            # Synced before the rename: after a power cut a trial must not crash on a truncated file and be
            # recorded as failed for ever.
            os.fsync(out.fileno())


def _pythonpath(environ: Mapping[str, str], state_dir: Path, version: str | None) -> str | None:
    """``PYTHONPATH`` for a process running ``version``: this agent's software directories taken out, ``version``'s
    put first (nothing for the installed package)."""
    root = str(software_dir(state_dir)) + os.sep
    kept = [
        entry
        for entry in environ.get("PYTHONPATH", "").split(os.pathsep)
        if entry and not (os.path.abspath(entry) + os.sep).startswith(root)
    ]
    if version is not None:
        kept.insert(0, str(software_dir(state_dir) / version))
    return os.pathsep.join(kept) or None


def _preflight(state_dir: Path, directory: Path, modules: Sequence[str], timeout: float) -> str | None:
    """Import the agent unpacked in ``directory`` in a child process; the problem in words, or ``None``."""
    env = dict(os.environ)
    env.pop(MARKER, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), _pythonpath(env, state_dir, None)]))
    code = (
        "import sys, importlib, garrison\nfor m in sys.argv[1:]: importlib.import_module(m)\nprint(garrison.__file__)"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-P", "-c", code, *modules],
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
            cwd=software_dir(state_dir),
        )
    except subprocess.TimeoutExpired:
        return f"importing it took more than {timeout:.0f} s"
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return "it does not import: " + (lines[-1] if lines else f"exit status {done.returncode}")[:300]
    loaded = Path(done.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    if not loaded.is_relative_to(directory):
        return f"another garrison package was imported instead ({loaded})"
    return None


def stage(
    state_dir: Path,
    wheel: bytes,
    version: str,
    *,
    limits: StageLimits | None = None,
    preflight: bool = True,
    now: Callable[[], float] = time.time,
) -> Path:
    """Unpack a verified release and make it the version on trial at the next start.

    Args:
        state_dir: the agent's state directory.
        wheel: the bytes of ``garrison-<version>-py3-none-any.whl``, already verified by the updater.
        version: the version the repository gave; ``garrison/__init__.py`` must declare the same.
        limits: bounds on the package.
        preflight: import the new version's agent in a child process before accepting it.
        now: wall-clock seconds, for the record.

    Returns:
        ``software/<version>/``. When ``version`` is already the current one nothing changes.

    Raises:
        SoftwareError: the package is refused (recorded in ``failed`` when the package itself is at fault, so that
            it is not downloaded again), or it could not be written.
    """
    limits = limits or StageLimits()
    if not _valid_version(version):
        raise SoftwareError(f"{version!r} is not a version this agent can install")
    root = software_dir(state_dir)
    target = root / version
    state = load_state(state_dir)
    if version in state["failed"]:
        raise SoftwareError(
            f"version {version} failed before ({state['failed'][version]}); it is not installed again automatically"
        )
    if version == state["current"] and _usable(state_dir, version):
        return target

    def refuse(reason: str) -> SoftwareError:
        _fail(state, version, f"package refused: {reason}", now())
        try:
            _save(state_dir, state)
        except OSError as exc:
            log.error("cannot record the refusal of version %s: %s", version, exc)
        return SoftwareError(f"version {version} refused: {reason}")

    if len(wheel) > limits.max_wheel_bytes:
        raise refuse(f"the package is {len(wheel)} bytes, more than {limits.max_wheel_bytes}")
    partial = root / (version + _PARTIAL)
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)  # left by a stage that was cut short
        try:
            with zipfile.ZipFile(BytesIO(wheel)) as archive:
                members = _check_wheel(archive, version, limits)
                _extract(archive, members, partial, limits)
        except SoftwareError as exc:
            raise refuse(str(exc)) from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, UnicodeDecodeError) as exc:
            raise refuse(f"not a readable wheel: {exc}") from None
        if preflight:
            problem = _preflight(state_dir, partial, PREFLIGHT_MODULES, PREFLIGHT_TIMEOUT)
            if problem:
                shutil.rmtree(partial, ignore_errors=True)
                raise refuse(problem)
        if target.exists():
            _replace_dir(partial, target)
        else:
            os.rename(partial, target)
        state["trial"] = {"version": version, "staged_at": _now_iso(now()), "started_at": None, "attempts": 0}
        _save(state_dir, state)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise SoftwareError(f"cannot stage version {version} in {root}: {exc}") from exc
    log.info("agent version %s is staged; it runs on trial at the next start", version)
    return target


def _replace_dir(new: Path, target: Path) -> None:
    # A directory cannot be renamed over another one that is not empty: move the old one aside first.
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


# -- starting ---------------------------------------------------------------------------------------------------


def _default_command() -> list[str]:
    # -P: no current directory on sys.path (a ``garrison`` folder there must not win over the staged version).
    return [sys.executable, "-P", "-m", "garrison.cli", *sys.argv[1:]]


def boot(
    state_dir: Path,
    running_version: str,
    environ: Mapping[str, str],
    *,
    restart: bool = False,
    command: Sequence[str] | None = None,
    exec_: Callable[[str, Sequence[str], Mapping[str, str]], object] | None = None,
    now: Callable[[], float] = time.time,
) -> BootDecision:
    """Decide which version this start runs, and ``exec`` into it when it is not the one running.

    Called first by ``garrison agent run``. On a fresh start (no :data:`MARKER`): a version on trial with starts
    left is counted and started; one with none left is recorded as failed and dropped; otherwise the current version
    runs (or the previous one, or the installed package, whichever has its files). A process started by ``boot``
    (the marker is set) runs as it is, unless ``restart`` (the daemon asked to be started again) is true.

    Args:
        state_dir: the agent's state directory.
        running_version: ``garrison.__version__`` of this process.
        environ: this process's environment (copied for the new process, never changed).
        restart: always start a new process (the daemon asked for it).
        command: the new process's arguments (default: this interpreter, ``-P -m garrison.cli`` and this process's
            arguments).
        exec_: replaces the process (default :func:`os.execve`); tests pass one that records and returns.
        now: wall-clock seconds.

    Never raises for a damaged state or a failed ``exec``: it says so in the log and runs what is running.
    """
    root = software_dir(state_dir)
    marker = environ.get(MARKER)
    # What this process runs: the staged version boot started it as, or the installed package.
    running = marker if marker not in (None, INSTALLED) and marker == running_version else None
    if not root.is_dir():
        return BootDecision("run", running, None, "no staged version")
    try:
        state = load_state(state_dir)
        if marker is not None and not restart:
            return _started(state_dir, state, marker, running_version, now)
        decision, write = _choose(state_dir, state, running, now)
        if write:
            _save(state_dir, state)
    except OSError as exc:
        # Without a record of the attempt a crashing trial could be started for ever: run what is running.
        log.error(
            "cannot read or update %s (%s); running version %s as it is", root / "boot.json", exc, running_version
        )
        return BootDecision("run", running, None, f"boot state unusable: {exc}")
    if decision.version == running and not restart:
        log.info("agent version %s: %s", running_version, decision.reason)
        return decision
    env = dict(environ)
    path = _pythonpath(environ, state_dir, decision.version)
    if path is None:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = path
    env[MARKER] = decision.version or INSTALLED
    argv = list(command) if command is not None else _default_command()
    log.info("starting agent version %s: %s", decision.version or "installed", decision.reason)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    _flush_logs()
    try:
        (exec_ or os.execve)(argv[0], argv, env)
    except OSError as exc:
        log.error("cannot start agent version %s: %s", decision.version or "installed", exc)
        if decision.version is not None and state["trial"] and state["trial"]["version"] == decision.version:
            _fail(state, decision.version, f"could not be started: {exc}", now())
            with contextlib.suppress(OSError):
                _save(state_dir, state)
        return BootDecision("run", running, None, f"exec failed: {exc}")
    return BootDecision("exec", decision.version, decision.path, decision.reason, decision.rolled_back)


def _flush_logs() -> None:
    # What is buffered is lost when the process is replaced.
    for logger in (logging.getLogger(), logging.getLogger("garrison")):
        for handler in logger.handlers:
            with contextlib.suppress(Exception):
                handler.flush()


def _started(
    state_dir: Path, state: dict[str, Any], marker: str, running_version: str, now: Callable[[], float]
) -> BootDecision:
    """This process was started by :func:`boot`: it runs, whatever the state says now (one exec per start)."""
    if marker == INSTALLED:
        return BootDecision("run", None, None, "started as the installed version")
    path = software_dir(state_dir) / marker
    if marker == running_version:
        return BootDecision("run", marker, path, f"started as version {marker}")
    # The version meant to start did not: its package was not the one imported.
    if state["trial"] is not None and state["trial"]["version"] == marker:
        _fail(state, marker, f"version {running_version} was imported instead of it", now())
        with contextlib.suppress(OSError):
            _save(state_dir, state)
    log.error("version %s was to start, but version %s did; it runs", marker, running_version)
    return BootDecision("run", None, None, f"version {marker} did not load", rolled_back=marker)


def _choose(
    state_dir: Path, state: dict[str, Any], running: str | None, now: Callable[[], float]
) -> tuple[BootDecision, bool]:
    """The version to run on a fresh start, updating ``state``; and whether ``state`` changed."""
    root = software_dir(state_dir)
    write = False
    rolled_back = None
    trial = state["trial"]
    if trial is not None:
        version = trial["version"]
        if not _usable(state_dir, version):
            state["trial"] = None
            state["last_rollback"] = {"version": version, "reason": "its files are missing", "at": _now_iso(now())}
            log.error("the staged agent version %s has no files in %s; it is dropped", version, root / version)
            write, rolled_back, trial = True, version, None
        elif trial["attempts"] >= MAX_ATTEMPTS:
            _fail(
                state,
                version,
                f"not healthy after {trial['attempts']} start(s): it stopped or crashed before its first heartbeat",
                now(),
            )
            write, rolled_back, trial = True, version, None
    if trial is not None:
        trial["attempts"] += 1
        trial["started_at"] = trial["started_at"] or _now_iso(now())
        reason = f"version {trial['version']} on trial, start {trial['attempts']} of {MAX_ATTEMPTS}"
        return BootDecision("exec", trial["version"], root / trial["version"], reason, rolled_back), True
    for name in ("current", "previous"):
        version = state[name]
        if _usable(state_dir, version):
            reason = f"the {name} version" + (f" (version {rolled_back} rolled back)" if rolled_back else "")
            if name == "previous":
                log.error("the current agent version %s has no files; running the previous one", state["current"])
            return BootDecision(
                "run" if version == running else "exec", version, root / version, reason, rolled_back
            ), write
    reason = "the installed version" + (f" (version {rolled_back} rolled back)" if rolled_back else "")
    return BootDecision("run" if running is None else "exec", None, None, reason, rolled_back), write


# -- after the start ---------------------------------------------------------------------------------------------


def mark_healthy(state_dir: Path, running_version: str) -> bool:
    """The running version works (it sent a heartbeat with its engine loaded): a version on trial becomes current,
    the current one becomes previous, and the directories of other versions are removed. ``True`` when it was a
    version on trial."""
    state = load_state(state_dir)
    trial = state["trial"]
    if trial is None or trial["version"] != running_version:
        return False
    if state["current"] != running_version:
        state["previous"] = state["current"]
    state["current"] = running_version
    state["trial"] = None
    _save(state_dir, state)
    log.info("agent version %s is healthy and is now the current version", running_version)
    keep = {state["current"], state["previous"]}
    for entry in software_dir(state_dir).iterdir():
        if entry.is_dir() and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
    return True


def fail_trial(state_dir: Path, version: str, reason: str, now: Callable[[], float] = time.time) -> None:
    """Give up ``version`` on trial: record it in ``failed`` so that the next start rolls back."""
    state = load_state(state_dir)
    if state["trial"] is not None and state["trial"]["version"] == version:
        _fail(state, version, reason, now())
        _save(state_dir, state)


class TrialWatch:
    """Whether this process runs a version on trial, and whether its time to become healthy is up.

    Build it when the daemon starts; call :meth:`healthy` after the first successful heartbeat with the engine
    loaded, and :meth:`expired` in the loop: when it is true, call :meth:`give_up` and restart (the next start runs
    the previous version).
    """

    def __init__(
        self,
        state_dir: Path,
        running_version: str,
        deadline_seconds: float = TRIAL_DEADLINE,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_dir = state_dir
        self.version = running_version
        self.deadline = deadline_seconds
        self._clock = clock
        self._started = clock()
        try:
            trial = load_state(state_dir)["trial"]
        except OSError:
            trial = None
        self.active = trial is not None and trial["version"] == running_version

    def expired(self, now: float | None = None) -> bool:
        return self.active and (self._clock() if now is None else now) - self._started >= self.deadline

    def healthy(self) -> bool:
        """Make the version on trial current (once); ``True`` when it did."""
        if not self.active:
            return False
        self.active = False
        return mark_healthy(self.state_dir, self.version)

    def give_up(self, reason: str | None = None) -> None:
        if not self.active:
            return
        self.active = False
        fail_trial(self.state_dir, self.version, reason or f"not healthy within {self.deadline:.0f} s of its start")


def report(state_dir: Path, running_version: str = __version__) -> dict[str, Any]:
    """What the agent tells the server about its software: the running version, the current and previous ones, the
    version on trial, the last rollback and the versions that failed."""
    state = load_state(state_dir)
    trial = state["trial"]
    return {
        "running": running_version,
        "current": state["current"],
        "previous": state["previous"],
        "trial": dict(trial) if trial else None,
        "last_rollback": state["last_rollback"],
        "failed": dict(state["failed"]),
    }
