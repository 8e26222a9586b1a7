"""The endpoint agent's idle footprint: a real ``garrison agent run`` enrolled to a real server, sampled with psutil.

Run it (PostgreSQL on 127.0.0.1:5432, as for ``bench/fleet.py``)::

    .venv/bin/python bench/agent_footprint.py --help
    .venv/bin/python bench/agent_footprint.py                  # 60 s idle, heartbeat every 5 s, real-time on a temp dir
    .venv/bin/python bench/agent_footprint.py --db DIR         # with signature databases loaded

What it does: starts ``garrison server run`` (HTTPS, self-signed certificate) on a fresh PostgreSQL database with
``GARRISON_HEARTBEAT_SECONDS=--interval``, creates an administrator, a unit and an enrollment token, enrolls the agent
with ``garrison agent enroll --fingerprint``, starts ``garrison agent run`` with real-time protection on a temporary
directory, waits for its first heartbeat and ``--warmup`` seconds, then samples the agent process (and any child)
once a second for ``--seconds``: resident memory (RSS and USS) and CPU time. It prints the median and maximum RSS,
and the CPU use as a percentage of one core: the median of the one-second samples and the mean over the whole
window (heartbeats are short bursts, so the median of one-second samples is usually 0 and the mean tells more).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import ADMIN, PASSWORD, Server, log, setup_server
from fleet import parse_args as fleet_args
from garrison.server.tls import CERT_NAME, certificate_fingerprint

MiB = 1024 * 1024
AGENT_COMMAND = (sys.executable, "-m", "garrison.cli", "agent")


def _tree(process: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [process, *process.children(recursive=True)]
    return []


def sample(process: psutil.Process) -> tuple[float, float, float]:
    """RSS and USS in bytes, and CPU seconds, of the agent and its children."""
    rss = uss = cpu = 0.0
    for member in _tree(process):
        with contextlib.suppress(psutil.Error):
            memory = member.memory_full_info()
            times = member.cpu_times()
            rss += memory.rss
            uss += memory.uss
            cpu += times.user + times.system
    return rss, uss, cpu


def heartbeats_seen(server: Server, agent_id: str) -> str | None:
    """The agent's last_seen_at as the server has it, through the REST API."""
    with httpx2.Client(base_url=server.url, verify=server.ssl_context(), timeout=30) as client:
        login = client.post("/api/v1/auth/login", json={"username": ADMIN, "password": PASSWORD})
        login.raise_for_status()
        answer = client.get(f"/api/v1/agents/{agent_id}")
        answer.raise_for_status()
        seen: str | None = answer.json()["last_seen_at"]
        inventory = answer.json()["inventory"] or {}
        return seen if inventory.get("hostname") else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The Garrison agent's idle memory and CPU, enrolled to a real server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds sampled while idle")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds to wait after the first heartbeat")
    parser.add_argument("--interval", type=float, default=5.0, help="heartbeat interval the server tells the agent")
    parser.add_argument("--db", type=Path, help="signature databases for the agent [default: none, EICAR only]")
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres", help="PostgreSQL server URL"
    )
    parser.add_argument("--json", type=Path, help="write the results to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="garrison-footprint-"))
    server_args = fleet_args(["--interval", str(args.interval), "--postgres", args.postgres])
    server = Server(server_args, work)
    watched = work / "watched"
    watched.mkdir()
    state = work / "agent"
    env = {
        **os.environ,
        "GARRISON_AGENT_STATE_DIR": str(state),
        "GARRISON_AGENT_HEARTBEAT_SECONDS": str(args.interval),
        "GARRISON_AGENT_REALTIME_PATHS": json.dumps([str(watched)]),
        "PYTHONUNBUFFERED": "1",
    }
    if args.db:
        env["GARRISON_AGENT_DB_DIR"] = str(args.db.resolve())
    server.create_database()
    agent: subprocess.Popen[bytes] | None = None
    try:
        server.start()
        token = setup_server(server)
        pin = certificate_fingerprint(work / "server" / CERT_NAME)
        enrolled = subprocess.run(
            [*AGENT_COMMAND, "enroll", "--server", server.url, "--token", token, "--fingerprint", pin],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if enrolled.returncode:
            raise RuntimeError(f"garrison agent enroll failed: {enrolled.stdout}{enrolled.stderr}")
        agent_id = json.loads((state / "identity.json").read_text())["agent_id"]
        log(f"agent {agent_id} enrolled; starting garrison agent run (real-time protection on {watched})")
        agent_log = work / "agent.log"
        with agent_log.open("wb") as output:
            agent = subprocess.Popen([*AGENT_COMMAND, "run"], stdout=output, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while heartbeats_seen(server, agent_id) is None:
            if agent.poll() is not None:
                raise RuntimeError(f"the agent exited: {agent_log.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("no heartbeat from the agent in 120 s")
            time.sleep(0.5)
        log(f"first heartbeat received; idling {args.warmup:g} s, then sampling {args.seconds:g} s ...")
        time.sleep(args.warmup)
        process = psutil.Process(agent.pid)
        rss: list[float] = []
        uss: list[float] = []
        cpu_percent: list[float] = []
        _, _, cpu_start = sample(process)
        previous, started = cpu_start, time.monotonic()
        last = started
        while time.monotonic() - started < args.seconds:
            time.sleep(1.0)
            r, u, c = sample(process)
            now = time.monotonic()
            rss.append(r)
            uss.append(u)
            cpu_percent.append((c - previous) / (now - last) * 100)
            previous, last = c, now
        wall = last - started
        mean_cpu = (previous - cpu_start) / wall * 100
        beats = sum(1 for line in server.log_path.read_text().splitlines() if "/api/v1/agent/heartbeat" in line)
        protection = [line for line in agent_log.read_text().splitlines() if "real-time protection" in line]
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        server.stop()
        server.drop_database()
    results = {
        "seconds": wall,
        "interval_s": args.interval,
        "signatures": str(args.db) if args.db else "none (built-in EICAR check only)",
        "rss_median_mib": statistics.median(rss) / MiB,
        "rss_max_mib": max(rss) / MiB,
        "uss_median_mib": statistics.median(uss) / MiB,
        "cpu_percent_median": statistics.median(cpu_percent),
        "cpu_percent_p95": sorted(cpu_percent)[int(len(cpu_percent) * 0.95) - 1],
        "cpu_percent_mean": mean_cpu,
        "heartbeats_in_server_log": beats,
        "realtime": protection[0] if protection else "not reported",
    }
    print("# Garrison agent idle footprint")
    print(
        f"garrison agent run, heartbeat every {args.interval:g} s, real-time protection on one directory, "
        f"signatures: {results['signatures']}; {wall:.0f} s sampled once a second"
    )
    print(
        f"memory: RSS median {results['rss_median_mib']:.1f} MiB (max {results['rss_max_mib']:.1f}), "
        f"USS median {results['uss_median_mib']:.1f} MiB"
    )
    print(
        f"CPU (% of one core): median of 1-s samples {results['cpu_percent_median']:.2f} %, "
        f"p95 {results['cpu_percent_p95']:.2f} %, mean over the window {results['cpu_percent_mean']:.2f} %"
    )
    print(f"heartbeats answered by the server (whole run): {beats}")
    print(f"agent: {results['realtime']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
