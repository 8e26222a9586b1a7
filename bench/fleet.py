"""The central server under a simulated fleet: real HTTP from asyncio "agents" to a real server on PostgreSQL.

Run it (PostgreSQL on 127.0.0.1:5432 with trust authentication, as on the team's machines)::

    .venv/bin/python bench/fleet.py --help
    .venv/bin/python bench/fleet.py                           # 10,000 agents, 180 s of heartbeats, 30 s of events
    .venv/bin/python bench/fleet.py --agents 2000 --duration 70 --event-seconds 10   # a quick run
    .venv/bin/python bench/fleet.py --ramp --event-seconds 0  # 1k, 2.5k, 5k, 10k, 15k ... until it breaks
    .venv/bin/python bench/fleet.py --http                    # plain HTTP (--insecure-http): TLS cost left out

What it does:

1. Creates a fresh PostgreSQL database (dropped at the end), starts ``garrison server run`` as a subprocess on a free
   port of 127.0.0.1 (HTTPS with its self-signed certificate, as in production, unless ``--http``; JSON logs to a
   file in the work directory), creates an administrator with ``garrison server create-admin``, logs in through the
   API, creates a unit and an enrollment token.
2. Enrolls ``--agents`` agents through ``POST /api/v1/agent/enroll``, concurrently.
3. Heartbeats for ``--duration`` seconds: every simulated agent (an asyncio task; all share one ``httpx2.AsyncClient``
   whose pool holds ``--connections`` connections) holds its policy (``GET /api/v1/agent/policy``, fetched right
   after enrolling, as a running agent has it saved; with ``--fresh-fleet`` it fetches it when its heartbeats
   start instead, the start-up storm of a fleet enrolled at once), then sends heartbeats with a realistic
   inventory, the first at a random moment of the interval (so that load is spread as in a real fleet) and then
   after the ``next_seconds`` the server answers. It fetches the policy again when the heartbeat's
   ``policy_revision`` differs from the one it has, and counts the ``tasks`` it is given. A server without the
   policy endpoint (404) or those fields is tolerated: "policy endpoint not available".
   With ``--ramp`` the fleet grows step by step (1k, 2.5k, 5k, 10k, 15k, ...; ``--step-seconds`` each) until the
   heartbeat p99 reaches 250 ms or errors appear.
4. Detection bursts for ``--event-seconds``: ``--event-senders`` agents at once each send batches of ``--batch``
   detections (fresh UUIDs) to ``POST /api/v1/agent/events`` in a loop; the rate of events stored and the batch
   latency are measured, and the rows in the database are counted at the end (they must match exactly).

Per phase it prints requests, errors (any non-2xx or exception, by kind), latency median/p95/p99/max, the achieved
rate, the ratio to the target, and the CPU time used by the server, by PostgreSQL and by this client (which runs
on the same cores as the server, so readers can judge how much of the machine the load generator itself took).
Targets (issue 3): 10,000 agents at a 60-second heartbeat with p99 under 250 ms and no errors; 2,000 detection
events per second ingested in batches.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from garrison.server.tls import CERT_NAME

P99_TARGET_MS = 250.0
AGENTS_TARGET = 10_000
EVENTS_TARGET = 2_000.0
DEFAULT_RAMP = (1_000, 2_500, 5_000, 10_000, 15_000, 20_000, 30_000, 40_000, 60_000)
PASSWORD = "fleet-bench-password-2026"  # noqa: S105 - a throwaway database
ADMIN = "bench.admin"

_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Measuring


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (sorted here)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


@dataclass
class CpuSample:
    """CPU seconds used so far by the server (its worker processes included), PostgreSQL and this client."""

    server: float
    postgres: dict[int, float]
    client: float
    machine: float
    wall: float


def _cpu_of(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    with contextlib.suppress(psutil.Error):
        total += _cpu_of(process)
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += _cpu_of(child)
    return total


def _postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process, by process id (backends come and go with connections)."""
    found: dict[int, float] = {}
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            with contextlib.suppress(psutil.Error):
                found[process.pid] = _cpu_of(process)
    return found


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


@dataclass
class Phase:
    """One load phase: latencies of answered requests and errors, by kind of request."""

    name: str
    target_rate: float | None = None
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)

    def ok(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)

    def error(self, kind: str, reason: str) -> None:
        self.errors[f"{kind}: {reason}"] += 1

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def error_count(self, kind: str | None = None) -> int:
        return sum(n for key, n in self.errors.items() if kind is None or key.startswith(f"{kind}:"))

    def summary(self, kind: str) -> dict[str, Any]:
        values = self.latencies.get(kind, [])
        errors = self.error_count(kind)
        result: dict[str, Any] = {"requests": len(values) + errors, "ok": len(values), "errors": errors}
        result["rate_per_s"] = (len(values) + errors) / self.elapsed if self.elapsed else 0.0
        if values:
            result.update(
                median_ms=statistics.median(values) * 1000,
                p95_ms=percentile(values, 0.95) * 1000,
                p99_ms=percentile(values, 0.99) * 1000,
                max_ms=max(values) * 1000,
            )
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": self.elapsed,
            "kinds": {kind: self.summary(kind) for kind in sorted(self.latencies.keys() | self._error_kinds())},
            "errors": dict(self.errors),
            "counts": dict(self.counts),
            "cpu_seconds": self.cpu,
        }

    def _error_kinds(self) -> set[str]:
        return {key.split(":", 1)[0] for key in self.errors}


class CpuWatch:
    """CPU seconds used during a phase by the server tree, PostgreSQL and this client process."""

    def __init__(self, server: psutil.Process) -> None:
        self.server = server

    def sample(self) -> CpuSample:
        return CpuSample(
            _tree_cpu(self.server), _postgres_cpu(), time.process_time(), _machine_busy(), time.monotonic()
        )

    @contextlib.contextmanager
    def measure(self, phase: Phase) -> Iterator[None]:
        before = self.sample()
        phase.started = time.monotonic()
        try:
            yield
        finally:
            phase.ended = time.monotonic()
            after = self.sample()
            postgres = sum(cpu - before.postgres.get(pid, 0.0) for pid, cpu in after.postgres.items())
            phase.cpu = {
                "server": after.server - before.server,
                "postgres": postgres,
                "client": after.client - before.client,
            }
            machine = after.machine - before.machine
            phase.cpu["everything else"] = max(0.0, machine - sum(phase.cpu.values()))
            phase.cpu["machine"] = machine


def print_phase(phase: Phase) -> None:
    print(f"\n## {phase.name}  ({phase.elapsed:.1f} s)")
    print(f"{'request':<10} {'requests':>9} {'errors':>7} {'rate/s':>8} {'median':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for kind in sorted(phase.latencies.keys() | phase._error_kinds()):
        s = phase.summary(kind)

        def ms(key: str, s: dict[str, Any] = s) -> str:
            return f"{s[key]:.1f}" if key in s else "-"

        print(
            f"{kind:<10} {s['requests']:>9,} {s['errors']:>7,} {s['rate_per_s']:>8.1f} {ms('median_ms'):>8} "
            f"{ms('p95_ms'):>8} {ms('p99_ms'):>8} {ms('max_ms'):>8}   (ms)"
        )
    for reason, n in sorted(phase.errors.items()):
        print(f"  error  {reason}: {n:,}")
    for name, n in sorted(phase.counts.items()):
        print(f"  count  {name}: {n:,}")
    if phase.cpu:
        seconds = phase.elapsed or 1.0
        parts = ", ".join(f"{who} {cpu:.1f} s ({cpu / seconds * 100:.0f} %)" for who, cpu in phase.cpu.items())
        print(f"  CPU    {parts}  (% of one core; the machine has {os.cpu_count()})")


# ---------------------------------------------------------------------------------------------------------------
# The server and its database


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """``garrison server run`` in a subprocess, with its own data directory and a fresh PostgreSQL database."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.port = free_port()
        self.tls = not args.http
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self.admin_url = make_url(args.postgres)
        self.database = f"garrison_fleet_{uuid.uuid4().hex[:10]}"
        self.database_url = self.admin_url.set(database=self.database).render_as_string(hide_password=False)
        self.log_path = work / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "GARRISON_DATA_DIR": str(work / "server"),
            "GARRISON_DATABASE_URL": self.database_url,
            "GARRISON_HEARTBEAT_SECONDS": str(args.interval),
        }
        self.env.update(dict(item.split("=", 1) for item in args.server_env))

    def create_database(self) -> None:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.database}"'))
        admin.dispose()

    def drop_database(self) -> None:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        admin.dispose()

    def query(self, sql: str) -> Any:
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return connection.execute(text(sql)).scalar()
        finally:
            engine.dispose()

    def garrison(self, *arguments: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "garrison.cli", *arguments],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"garrison {' '.join(arguments)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def start(self) -> None:
        command = [sys.executable, "-m", "garrison.cli", "server", "run", "--port", str(self.port)]
        if self.args.profile:  # the same command, under cProfile in every thread (see serve_profiled)
            command[1:3] = [str(Path(__file__).resolve()), "serve-profiled", str(self.args.profile.resolve())]
        command += ["--host", "127.0.0.1", "--workers", str(self.args.workers)]
        if not self.tls:
            command.append("--insecure-http")
        with self.log_path.open("ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see {self.log_path}")
            try:
                context = self.ssl_context() if self.tls else False
                if httpx2.get(f"{self.url}/healthz", verify=context, timeout=2).status_code == 200:
                    return
            except (httpx2.HTTPError, OSError):  # not listening yet, or no certificate made yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /healthz in 60 s; see {self.log_path}")
            time.sleep(0.2)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.work / "server" / CERT_NAME))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---------------------------------------------------------------------------------------------------------------
# Simulated agents


OSES = (
    ("Windows", "10.0.19045"),
    ("Windows", "10.0.22631"),
    ("Windows Server", "10.0.17763"),
    ("Linux", "Ubuntu 22.04.4 LTS"),
    ("Linux", "Debian GNU/Linux 12"),
)


@dataclass
class SimAgent:
    index: int
    hostname: str
    os: str
    os_version: str
    agent_id: str = ""
    secret: str = ""
    policy_revision: str | None = None
    started: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Agent {self.agent_id}:{self.secret}"}

    def inventory(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        i = self.index
        return {
            "hostname": self.hostname,
            "os": self.os,
            "os_version": self.os_version,
            "ips": [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", f"fe80::{i % 65536:x}"],
            "macs": [f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"],
            "agent_version": "0.9.0",
            "engine_version": "0.9.0",
            "signature_version": "27461",
            "signature_date": (now - timedelta(hours=6)).isoformat(),
            "realtime_enabled": True,
            "firewall_enabled": i % 7 != 0,
            "last_scan_at": (now - timedelta(hours=i % 24)).isoformat(),
            "errors": [],
            "events_dropped": 0,
        }


def make_agents(first: int, count: int) -> list[SimAgent]:
    agents = []
    for i in range(first, first + count):
        os_name, os_version = OSES[i % len(OSES)]
        agents.append(SimAgent(i, f"pc-{i:06d}.so-yte.bn.gov.vn", os_name, os_version))
    return agents


def detection(rng: random.Random) -> dict[str, Any]:
    action = rng.choice(("report", "quarantine", "quarantine", "delete"))
    return {
        "id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "path": f"C:\\Users\\nv{rng.randrange(1000):03d}\\Downloads\\hoa-don-{rng.randrange(10**6)}.zip",
        "chain": ["hoa-don.zip", "hoa-don.exe"] if rng.random() < 0.5 else [],
        "name": rng.choice(("Win.Trojan.Agent-123456", "Eicar-Signature", "Doc.Downloader.Emotet-7001")),
        "kind": rng.choice(("hash", "ndb", "ldb", "yara")),
        "database": "main.cvd",
        "signature": "sig-" + str(rng.randrange(10**6)),
        "md5": f"{rng.getrandbits(128):032x}",
        "sha256": f"{rng.getrandbits(256):064x}",
        "size": rng.randrange(1, 10**7),
        "action": action,
        "action_ok": True,
        "action_detail": None,
    }


def _reason(exc: BaseException) -> str:
    return type(exc).__name__


class Fleet:
    """The simulated agents and the one HTTP client they share."""

    def __init__(self, server: Server, args: argparse.Namespace) -> None:
        self.server = server
        self.args = args
        self.agents: list[SimAgent] = []
        self.policy_available: bool | None = None  # unknown until the first answer
        self.policy_revisions: set[str] = set()
        # A real agent calls once a minute and the server closes idle connections after 5 s (uvicorn's default), so
        # in a real fleet nearly every heartbeat opens a new TCP and TLS connection: --fresh-connections does that.
        keepalive = 0 if args.fresh_connections else args.connections
        limits = httpx2.Limits(max_connections=args.connections, max_keepalive_connections=keepalive)
        verify: ssl.SSLContext | bool = server.ssl_context() if server.tls else False
        self.client = httpx2.AsyncClient(
            base_url=server.url, verify=verify, limits=limits, timeout=httpx2.Timeout(60.0, pool=120.0)
        )

    async def close(self) -> None:
        await self.client.aclose()

    # -- enrollment

    async def enroll(self, token: str, count: int, phase: Phase) -> None:
        new = make_agents(len(self.agents), count)
        gate = asyncio.Semaphore(self.args.enroll_concurrency)

        async def one(agent: SimAgent) -> None:
            body = {
                "token": token,
                "hostname": agent.hostname,
                "os": agent.os,
                "os_version": agent.os_version,
                "agent_version": "0.9.0",
            }
            for _attempt in range(5):
                async with gate:
                    started = time.perf_counter()
                    try:
                        answer = await self.client.post("/api/v1/agent/enroll", json=body)
                    except httpx2.HTTPError as exc:
                        phase.error("enroll", _reason(exc))
                        continue
                    if answer.status_code == 201:
                        phase.ok("enroll", time.perf_counter() - started)
                        identity = answer.json()
                        agent.agent_id, agent.secret = identity["agent_id"], identity["secret"]
                        if not self.args.fresh_fleet:
                            # A running fleet: each agent already holds its policy (saved on disk by a real agent)
                            # when the measured heartbeats begin.
                            agent.started = True
                            await self.fetch_policy(agent, phase)
                        return
                    phase.error("enroll", f"HTTP {answer.status_code}")
                await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))

        await asyncio.gather(*(one(agent) for agent in new))
        self.agents.extend(agent for agent in new if agent.agent_id)

    # -- heartbeats and policy

    async def fetch_policy(self, agent: SimAgent, phase: Phase) -> None:
        if self.policy_available is False:
            return
        started = time.perf_counter()
        try:
            answer = await self.client.get("/api/v1/agent/policy", headers=agent.headers)
        except httpx2.HTTPError as exc:
            phase.error("policy", _reason(exc))
            return
        if answer.status_code in (404, 405):
            if self.policy_available is None:
                print("policy endpoint not available (GET /api/v1/agent/policy answered 404): policy polls skipped")
            self.policy_available = False
            phase.counts["policy endpoint not available"] += 1
            return
        if answer.status_code != 200:
            phase.error("policy", f"HTTP {answer.status_code}")
            return
        phase.ok("policy", time.perf_counter() - started)
        self.policy_available = True
        revision = answer.json().get("revision")
        agent.policy_revision = str(revision) if revision is not None else ""
        self.policy_revisions.add(agent.policy_revision)

    async def heartbeat_loop(self, agent: SimAgent, phase: Phase, first_delay: float, stop_at: float) -> None:
        await asyncio.sleep(first_delay)
        if not agent.started:  # an agent fetches its policy when it starts
            agent.started = True
            await self.fetch_policy(agent, phase)
        while time.monotonic() < stop_at:
            wait = self.args.interval
            started = time.perf_counter()
            try:
                inventory = {**agent.inventory(), "policy_revision": agent.policy_revision or ""}
                answer = await self.client.post(
                    "/api/v1/agent/heartbeat", json={"inventory": inventory}, headers=agent.headers
                )
            except httpx2.HTTPError as exc:
                phase.error("heartbeat", _reason(exc))
            else:
                if answer.status_code == 200:
                    phase.ok("heartbeat", time.perf_counter() - started)
                    body = answer.json()
                    wait = float(body["next_seconds"])
                    revision = body.get("policy_revision")
                    if revision is None:
                        phase.counts["heartbeat answers without policy_revision"] += 1
                    elif str(revision) != agent.policy_revision:
                        phase.counts["policy refetched (revision changed)"] += 1
                        await self.fetch_policy(agent, phase)
                    tasks = body.get("tasks")
                    if tasks is None:
                        phase.counts["heartbeat answers without tasks"] += 1
                    else:
                        phase.counts["tasks received"] += len(tasks)
                else:
                    phase.error("heartbeat", f"HTTP {answer.status_code}")
                    with contextlib.suppress(ValueError):
                        wait = float(answer.headers.get("Retry-After", wait))
            if time.monotonic() + wait >= stop_at:
                return
            await asyncio.sleep(wait)

    async def heartbeats(self, phase: Phase, seconds: float) -> None:
        """Every agent beats for ``seconds``, the first beat at a random moment of the interval."""
        stop_at = time.monotonic() + seconds
        rng = random.Random(len(self.agents))
        await asyncio.gather(
            *(self.heartbeat_loop(agent, phase, rng.uniform(0, self.args.interval), stop_at) for agent in self.agents)
        )

    # -- detections

    async def events(self, phase: Phase, seconds: float) -> int:
        """``--event-senders`` agents send batches of ``--batch`` detections in a loop; the events stored."""
        stop_at = time.monotonic() + seconds
        stored = 0

        async def sender(agent: SimAgent, seed: int) -> None:
            nonlocal stored
            rng = random.Random(seed)
            while time.monotonic() < stop_at:
                batch = {"detections": [detection(rng) for _ in range(self.args.batch)]}
                started = time.perf_counter()
                try:
                    answer = await self.client.post("/api/v1/agent/events", json=batch, headers=agent.headers)
                except httpx2.HTTPError as exc:
                    phase.error("events", _reason(exc))
                    continue
                if answer.status_code != 200:
                    phase.error("events", f"HTTP {answer.status_code}")
                    with contextlib.suppress(ValueError):
                        await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
                    continue
                phase.ok("events", time.perf_counter() - started)
                ack = answer.json()
                new = len(ack["accepted"]) - int(ack.get("duplicates", 0))
                stored += new
                phase.counts["events stored"] += new

        senders = self.agents[: self.args.event_senders]
        await asyncio.gather(*(sender(agent, i) for i, agent in enumerate(senders)))
        return stored


# ---------------------------------------------------------------------------------------------------------------
# The run


def setup_server(server: Server) -> str:
    """An administrator (command line), a unit and an enrollment token (REST API): the token."""
    server.garrison("server", "create-admin", "--username", ADMIN, "--password-stdin", stdin=PASSWORD + "\n")
    verify: ssl.SSLContext | bool = server.ssl_context() if server.tls else False
    with httpx2.Client(base_url=server.url, verify=verify, timeout=60) as client:
        login = client.post("/api/v1/auth/login", json={"username": ADMIN, "password": PASSWORD})
        login.raise_for_status()
        headers = {"X-CSRF-Token": login.json()["csrf_token"]}
        unit = client.post("/api/v1/units", json={"name": "Sở Y tế (bench)", "kind": "province"}, headers=headers)
        unit.raise_for_status()
        body = {"name": "fleet bench", "unit_id": unit.json()["id"], "days": 1}
        token = client.post("/api/v1/enrollment-tokens", json=body, headers=headers)
        token.raise_for_status()
        return str(token.json()["token"])


def verdict_heartbeats(phase: Phase, agents: int) -> dict[str, Any]:
    summary = phase.summary("heartbeat")
    errors = sum(phase.errors.values())
    p99 = summary.get("p99_ms")
    held = p99 is not None and p99 < P99_TARGET_MS and errors == 0
    return {"agents": agents, "p99_ms": p99, "errors": errors, "held": held, **summary}


def print_heartbeat_verdict(phase: Phase, agents: int, interval: float) -> dict[str, Any]:
    verdict = verdict_heartbeats(phase, agents)
    expected = agents / interval
    print(
        f"  rate   {verdict['rate_per_s']:.1f} heartbeats/s achieved, {expected:.1f}/s expected "
        f"({agents:,} agents / {interval:g} s)"
    )
    if verdict["p99_ms"] is not None:
        ratio = P99_TARGET_MS / verdict["p99_ms"]
        print(
            f"  target p99 < {P99_TARGET_MS:.0f} ms, no errors: p99 {verdict['p99_ms']:.1f} ms "
            f"({ratio:.1f}x headroom), {verdict['errors']} errors: {'MET' if verdict['held'] else 'MISSED'}; "
            f"agents {agents:,} / {AGENTS_TARGET:,} = {agents / AGENTS_TARGET:.2f}x the target fleet"
        )
    return verdict


async def run_load(server: Server, args: argparse.Namespace, cpu: CpuWatch) -> dict[str, Any]:
    results: dict[str, Any] = {"phases": []}
    token = setup_server(server)
    fleet = Fleet(server, args)
    try:
        steps = [n for n in args.ramp if n > 0] if args.ramp else [args.agents]
        held: int | None = None
        broke: dict[str, Any] | None = None
        for step in steps:
            enroll = Phase(f"enroll {step - len(fleet.agents):,} agents (fleet of {step:,})")
            log(f"enrolling {step - len(fleet.agents):,} agents ...")
            with cpu.measure(enroll):
                await fleet.enroll(token, step - len(fleet.agents), enroll)
            print_phase(enroll)
            results["phases"].append(enroll.to_json())
            seconds = args.step_seconds if args.ramp else args.duration
            beat = Phase(f"heartbeats: {len(fleet.agents):,} agents, interval {args.interval:g} s, {seconds:g} s")
            log(f"heartbeats: {len(fleet.agents):,} agents for {seconds:g} s ...")
            with cpu.measure(beat):
                await fleet.heartbeats(beat, seconds)
            print_phase(beat)
            verdict = print_heartbeat_verdict(beat, len(fleet.agents), args.interval)
            results["phases"].append({**beat.to_json(), "verdict": verdict})
            if verdict["held"]:
                held = len(fleet.agents)
            else:
                broke = verdict
                break
        results["largest_fleet_held"] = held
        results["broke_at"] = broke
        if args.ramp:
            print(f"\nlargest fleet held: {held or 0:,} agents", end="")
            if broke:
                print(f"; breaks at {broke['agents']:,} (p99 {broke['p99_ms'] or 0:.0f} ms, {broke['errors']} errors)")
            else:
                print(" (did not break within the ramp)")
        if args.event_seconds > 0:
            events = Phase(
                f"detections: {args.event_senders} agents sending batches of {args.batch}, {args.event_seconds:g} s"
            )
            log(f"detection bursts for {args.event_seconds:g} s ...")
            before = int(server.query("SELECT count(*) FROM detections"))
            with cpu.measure(events):
                stored = await fleet.events(events, args.event_seconds)
            print_phase(events)
            in_database = int(server.query("SELECT count(*) FROM detections")) - before
            rate = stored / events.elapsed
            print(
                f"  rate   {rate:,.0f} events/s stored ({stored:,} events; {in_database:,} rows counted in the "
                f"database: {'exact' if in_database == stored else 'MISMATCH'})"
            )
            print(f"  target {EVENTS_TARGET:,.0f} events/s: {rate / EVENTS_TARGET:.2f}x, "
                  f"{'MET' if rate >= EVENTS_TARGET and not events.errors else 'MISSED'}")  # fmt: skip
            results["phases"].append(
                {**events.to_json(), "events_per_s": rate, "stored": stored, "rows_in_database": in_database}
            )
        sessions = server.query("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        print(f"\nPostgreSQL connections opened to the database during the run: {sessions:,}")
        results["postgres_sessions"] = sessions
        uses = server.query("SELECT sum(uses) FROM enrollment_tokens")
        print(f"enrollment token uses recorded: {uses:,} for {len(fleet.agents):,} agents enrolled")
        results["token_uses"] = uses
        results["policy_endpoint"] = fleet.policy_available
    finally:
        await fleet.close()
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Garrison's server under a simulated fleet of agents (real HTTP, real PostgreSQL).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--agents", type=int, default=AGENTS_TARGET, help="simulated agents (without --ramp)")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of heartbeats (without --ramp)")
    parser.add_argument("--interval", type=float, default=60.0, help="heartbeat interval the server tells agents")
    parser.add_argument(
        "--ramp",
        nargs="?",
        const=",".join(map(str, DEFAULT_RAMP)),
        type=lambda value: [int(n) for n in value.split(",")],
        help="grow the fleet through these sizes (comma-separated) until p99 >= 250 ms or errors appear "
        f"[bare --ramp: {','.join(map(str, DEFAULT_RAMP))}]",
    )
    parser.add_argument("--step-seconds", type=float, default=90.0, help="heartbeat seconds per --ramp step")
    parser.add_argument("--event-seconds", type=float, default=30.0, help="seconds of detection bursts (0: none)")
    parser.add_argument("--event-senders", type=int, default=8, help="agents sending detection batches at once")
    parser.add_argument("--batch", type=int, default=500, help="detections per batch (the protocol allows 1,000)")
    parser.add_argument("--workers", type=int, default=1, help="server processes (garrison server run --workers)")
    parser.add_argument("--connections", type=int, default=64, help="the client's connection pool")
    parser.add_argument("--enroll-concurrency", type=int, default=32, help="enrollments in flight at once")
    parser.add_argument("--http", action="store_true", help="plain HTTP (--insecure-http) instead of HTTPS")
    parser.add_argument(
        "--fresh-fleet",
        action="store_true",
        help="agents enrolled just now: each fetches its policy when its heartbeats start (the start-up storm); "
        "default: a running fleet, each agent holding its policy (fetched during enrollment) before the heartbeats",
    )
    parser.add_argument(
        "--fresh-connections",
        action="store_true",
        help="a new connection (TCP + TLS handshake) for every request, as agents calling once a minute do; "
        "default: a keep-alive pool, which leaves the handshakes out",
    )
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres", help="PostgreSQL server URL"
    )
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="extra GARRISON_* for the server"
    )
    parser.add_argument("--work", type=Path, help="directory for the server's data and log [default: a temporary one]")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the server under cProfile (every thread: the endpoints run in a thread pool) and write the "
        "statistics here (pstats format; profiling slows the server, so its figures are not the benchmark's)",
    )
    return parser.parse_args(argv)


def serve_profiled(output: Path, arguments: list[str]) -> int:
    """``garrison <arguments>`` with a cProfile profiler in the main thread and in every thread started after."""
    import cProfile
    import pstats
    import threading

    from garrison.cli.main import cli

    profiles: list[cProfile.Profile] = []

    def start_thread_profile(*_: object) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()  # replaces this hook in the new thread

    main = cProfile.Profile()
    threading.setprofile(start_thread_profile)
    main.enable()
    try:
        cli.main(arguments, standalone_mode=False)
    finally:
        main.disable()
        threading.setprofile(None)
        stats = pstats.Stats(main)
        for profile in profiles:
            with contextlib.suppress(TypeError):  # a thread that never ran Python code
                profile.disable()
                stats.add(profile)
        stats.dump_stats(output)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="garrison-fleet-"))
    work.mkdir(parents=True, exist_ok=True)
    server = Server(args, work)
    transport = "plain HTTP (--insecure-http)" if args.http else "HTTPS (the server's self-signed certificate)"
    print("# Garrison fleet benchmark")
    print(
        f"server: garrison server run --workers {args.workers}, {transport}, PostgreSQL database {server.database}, "
        f"log {server.log_path}"
    )
    print(
        f"client: one asyncio process, one httpx2.AsyncClient, at most {args.connections} connections "
        f"({'a new one per request' if args.fresh_connections else 'kept alive'}); "
        f"machine: {os.cpu_count()} cores"
    )
    server.create_database()
    try:
        server.start()
        cpu = CpuWatch(psutil.Process(server.process.pid if server.process else os.getpid()))
        results = asyncio.run(run_load(server, args, cpu))
    finally:
        server.stop()
        server.drop_database()
    results["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    results["transport"] = transport
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve-profiled"]:
        sys.exit(serve_profiled(Path(sys.argv[2]), sys.argv[3:]))
    sys.exit(main())
