"""``make run``: the whole system on this machine with the embedded default (SQLite), until Ctrl-C.

1. The server (``garrison server run``: HTTPS with its self-signed certificate, on 127.0.0.1) with its data in
   ``ROOT/server``; with no administrator yet, the one-time setup link it prints is shown prominently. There is
   no default account and no default password.
2. When the organisation tree is empty, a root unit for this machine ("Máy cục bộ") is created through the
   server's own services on the same database, recorded in the audit log as the system.
3. A local agent (state in ``ROOT/agent``) is enrolled into that unit with a one-use enrollment token, unless it
   is enrolled already, then ``garrison agent run`` starts, protecting ``ROOT/demo`` in real time: a file
   detected there is quarantined, and can be restored from the console (Quarantine page).
4. On the first enrollment, the harmless EICAR test file is written to ``ROOT/demo`` and scanned with
   ``garrison agent scan``, so a detection shows in the console (``--no-eicar`` skips it).

Ctrl-C (SIGINT) or SIGTERM stops the agent, then the server. A second start reuses everything: the same unit, the
same enrollment, the same port when it is free.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from sqlalchemy import func, select

from garrison.agent import identity as identities
from garrison.engine.eicar import EICAR
from garrison.server.agents import service as agents
from garrison.server.audit.service import SYSTEM
from garrison.server.auth.scope import Scope
from garrison.server.db import Database, make_engine, migrate
from garrison.server.units import service as units
from garrison.server.units.models import Unit, UnitKind

DEFAULT_ROOT = Path(__file__).resolve().parent.parent / ".garrison" / "local"
DEFAULT_PORT = 8443
HOST = "127.0.0.1"
LOCAL_UNIT = "Máy cục bộ"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
GARRISON = [sys.executable, "-m", "garrison.cli"]
PIN = re.compile(r"\b((?:[0-9A-F]{2}:){31}[0-9A-F]{2})\b")
SETUP = re.compile(r"(https?://\S+/setup\?token=\S+)")


class RunError(Exception):
    """Something that stops ``make run`` with a message and no traceback."""


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def choose_port(wanted: int) -> int:
    """``wanted`` or the next free port after it."""
    for port in range(wanted, min(wanted + 100, 65536)):
        if _port_free(port):
            return port
    raise RunError(f"no free port between {wanted} and {wanted + 99} on {HOST}")


class Child:
    """A ``garrison`` subprocess in its own process group (so Ctrl-C reaches this script only, which then stops
    the children in order), its output copied to a log file and offered, line by line, to ``watch``."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log: Path, watch: Callable[[str], None] | None = None
    ) -> None:
        self.name = name
        self.log = log
        self._watch = watch
        self._log_file = log.open("a", encoding="utf-8")
        self.process = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            process_group=0,
        )
        self._reader = threading.Thread(target=self._copy, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _copy(self) -> None:
        for line in self.process.stdout or ():
            self._log_file.write(line)
            self._log_file.flush()
            if self._watch is not None:
                self._watch(line.rstrip("\n"))

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not ended in time; the exit status."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"{self.name} did not stop in {STOP_TIMEOUT:.0f} s; killing it", flush=True)
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log_file.close()
        return self.process.returncode


def _healthz(port: int, pin: str) -> bool:
    """The server answers ``/healthz`` over TLS with the certificate whose fingerprint it printed."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the certificate is checked against the pin below, before the request
    connection = http.client.HTTPSConnection(HOST, port, timeout=2, context=context)
    try:
        connection.connect()
        tls_socket = connection.sock
        der = tls_socket.getpeercert(binary_form=True) if isinstance(tls_socket, ssl.SSLSocket) else None
        der = der or b""
        if ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest()) != pin:
            raise RunError(f"the server on port {port} presents another certificate than the one it printed")
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        return response.status == 200 and json.loads(response.read()).get("status") == "ok"
    except (OSError, ValueError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def ensure_local_unit(database: Database) -> tuple[int, bool]:
    """The unit the local agent belongs to: a new root unit when the tree is empty, else the tree's root."""
    scope = Scope.whole_tree()
    with database.session() as session:
        if not session.scalar(select(func.count()).select_from(Unit)):
            unit = units.create(session, scope, SYSTEM, units.UnitFields(name=LOCAL_UNIT, kind=UnitKind.PROVINCE))
            return unit.id, True
        root = session.scalar(select(Unit).where(Unit.parent_id.is_(None)).order_by(Unit.id))
        if root is None:
            raise RunError("the organisation tree has units but no root")
        return root.id, False


def _last_seen(database: Database, agent_id: str) -> datetime | None:
    """When the server last heard from the agent (its heartbeats)."""
    with database.session() as session:
        return agents.get_agent(session, Scope.whole_tree(), agent_id).last_seen_at


def enrollment_token(database: Database, unit_id: int) -> str:
    with database.session() as session:
        _, token = agents.create_enrollment_token(
            session, Scope.whole_tree(), SYSTEM, unit_id, "make run: local agent", days=1, max_uses=1
        )
    return token


def _run(command: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1) or (what == "enroll" and result.returncode):
        raise RunError(f"garrison agent {what} failed:\n{result.stdout}{result.stderr}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"data directory [default: {DEFAULT_ROOT}]")
    parser.add_argument("--port", type=int, help=f"server port [default: the last one used, else {DEFAULT_PORT}]")
    parser.add_argument("--no-eicar", action="store_true", help="do not drop the EICAR test file on first enroll")
    options = parser.parse_args(argv)

    root: Path = options.root.resolve()
    server_dir, agent_dir, demo_dir, log_dir = root / "server", root / "agent", root / "demo", root / "logs"
    for directory in (server_dir, agent_dir, demo_dir, log_dir, root / "feeds"):
        directory.mkdir(parents=True, exist_ok=True)
    agent_dir.chmod(0o700)

    env = {key: value for key, value in os.environ.items() if not key.startswith("GARRISON_")}
    env |= {"GARRISON_DATA_DIR": str(server_dir), "GARRISON_HOST": HOST, "PYTHONUNBUFFERED": "1"}
    # Signature files copied into feeds/ are imported and published to the agent (as on a network without internet).
    server_env = env | {"GARRISON_UPDATES_WATCH_DIR": str(root / "feeds"), "GARRISON_UPDATES_CHECK_SECONDS": "10"}
    agent_env = env | {
        "GARRISON_AGENT_STATE_DIR": str(agent_dir),
        "GARRISON_AGENT_WATCH_PATHS": json.dumps([str(demo_dir)]),
        "GARRISON_AGENT_REALTIME_PATHS": json.dumps([str(demo_dir)]),
        "GARRISON_AGENT_REALTIME_ACTION": "quarantine",
    }
    identity = identities.load(agent_dir / "identity.json")
    enrolled_port = urlsplit(identity.server_url).port if identity else None
    port = options.port or choose_port(enrolled_port or DEFAULT_PORT)
    if not _port_free(port):
        raise RunError(f"port {port} is in use; give another with --port")

    database = Database(make_engine(f"sqlite:///{server_dir / 'garrison.db'}"))
    try:
        return _start(options, database, root, port, identity, server_env, agent_env)
    finally:
        database.engine.dispose()


def _start(
    options: argparse.Namespace,
    database: Database,
    root: Path,
    port: int,
    identity: identities.Identity | None,
    env: dict[str, str],
    agent_env: dict[str, str],
) -> int:
    server_dir, agent_dir, demo_dir, log_dir = root / "server", root / "agent", root / "demo", root / "logs"
    url = f"https://{HOST}:{port}"
    migrate(database.engine)
    unit_id, unit_created = ensure_local_unit(database)

    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _stop)

    found: queue.Queue[tuple[str, str]] = queue.Queue()

    def _watch_server(line: str) -> None:
        if match := PIN.search(line):
            found.put(("pin", match.group(1)))
        if match := SETUP.search(line):
            found.put(("setup", match.group(1)))

    print(f"Starting the server on {url} (data in {server_dir})...", flush=True)
    server = Child(
        "server", [*GARRISON, "server", "run", "--port", str(port)], env, log_dir / "server.log", _watch_server
    )
    agent: Child | None = None
    try:
        pin, setup = "", ""
        deadline = time.monotonic() + START_TIMEOUT
        while not (pin and _healthz(port, pin)):
            if stop.is_set():
                return 0
            if not server.running():
                raise RunError(f"the server stopped (status {server.process.returncode}); see {server.log}")
            if time.monotonic() > deadline:
                raise RunError(f"the server did not answer within {START_TIMEOUT:.0f} s; see {server.log}")
            try:
                kind, value = found.get(timeout=0.1)
            except queue.Empty:
                continue
            pin, setup = (value, setup) if kind == "pin" else (pin, value)
        while not found.empty():  # the setup link is printed before uvicorn starts: it is here already
            kind, value = found.get_nowait()
            setup = value if kind == "setup" else setup

        if unit_created:
            print(f'Created the root unit "{LOCAL_UNIT}" for this machine (audit log: system).', flush=True)
        if identity is not None and identity.server_url == url and identity.fingerprint == pin:
            print(f"The local agent is already enrolled (agent {identity.agent_id}).", flush=True)
            first_enroll = False
        else:
            token = enrollment_token(database, unit_id)
            result = _run(
                [*GARRISON, "agent", "enroll", "--server", url, "--fingerprint", pin],
                agent_env | {"GARRISON_AGENT_TOKEN": token},  # not on the command line, where ps shows it
                "enroll",
            )
            print(result.stdout.strip(), flush=True)
            first_enroll = True

        if first_enroll and not options.no_eicar:
            sample = demo_dir / "eicar.com"
            sample.write_bytes(EICAR)
            print(
                f"Dropped the EICAR test file in {sample} (a harmless, standard test file every anti-malware "
                "detects) and scanned it:",
                flush=True,
            )
            print(_run([*GARRISON, "agent", "scan", str(demo_dir)], agent_env, "scan").stdout.strip(), flush=True)

        identity = identities.load(agent_dir / "identity.json")
        if identity is None:
            raise RunError(f"the agent's identity is missing from {agent_dir}")
        seen = _last_seen(database, identity.agent_id)
        agent = Child("agent", [*GARRISON, "-v", "agent", "run"], agent_env, log_dir / "agent.log")
        deadline = time.monotonic() + START_TIMEOUT
        while _last_seen(database, identity.agent_id) == seen:
            if stop.wait(0.1):
                return 0
            if not agent.running():
                raise RunError(f"the agent stopped (status {agent.process.returncode}); see {agent.log}")
            if time.monotonic() > deadline:
                raise RunError(f"the agent did not report within {START_TIMEOUT:.0f} s; see {agent.log}")
        print(f"The local agent {identity.agent_id} is running and reporting.", flush=True)
        _banner(url, setup, root, log_dir, agent_dir, demo_dir, pin)
        while not stop.wait(0.1):
            for child in (server, agent):
                if not child.running():
                    raise RunError(f"the {child.name} stopped (status {child.process.returncode}); see {child.log}")
        print("\nStopping...", flush=True)
        return 0
    finally:
        if agent is not None:
            agent.stop()
            print("agent stopped", flush=True)
        server.stop()
        print("server stopped", flush=True)


def _banner(url: str, setup: str, root: Path, logs: Path, agent_dir: Path, demo_dir: Path, pin: str) -> None:
    line = "=" * 100
    print(line)
    if setup:
        print("Mở liên kết này để tạo tài khoản quản trị đầu tiên / Open this link to create the first administrator:")
        print(f"\n    {setup}\n")
        print("(it works once; a restart replaces it. There is no default account or password.)")
        print(line)
    print(f"Console:        {url}/  (self-signed certificate, SHA-256 {pin})")
    print(f"Data:           {root}")
    print(f"Logs:           {logs / 'server.log'}, {logs / 'agent.log'}")
    print(f"Agent state:    {agent_dir}")
    print(f"Protected:      {demo_dir}  (real time: a file detected there is quarantined; restore it from the")
    print("                console's Quarantine page)")
    print(f"Signatures:     copy ClamAV, YARA or IOC files into {root / 'feeds'}: they are published to the agent")
    print("Garrison is ready. Ctrl-C stops everything (the agent, then the server).")
    print(line, flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RunError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        sys.exit(1)
