"""How long ``reports.statistics.compute`` takes on a year of data for 10,000 endpoints.

Run it::

    .venv/bin/python bench/statistics.py                  # SQLite in a temporary directory
    .venv/bin/python bench/statistics.py --postgres       # a fresh PostgreSQL database (dropped at the end)
    .venv/bin/python bench/statistics.py --agents 2000 --detections 100000 --runs 3

It builds a migrated database with a province of 20 departments of 10 units each, ``--agents`` agents spread over
the units (a few offline, revoked, without real-time protection or with old signatures) and ``--detections``
detections spread over the last 365 days (a few dozen names and four types, the agent's actions and people's
triage mixed), inserted in bulk (one executemany per 10,000 rows), and a year of daily endpoint states per unit
(what ``reports.history`` records). Then it times ``compute`` for the whole province and for one department, over
the last quarter, the last year and a past quarter (whose endpoints come from the recorded states): the median of
``--runs`` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text

from garrison.server.agents.models import Agent
from garrison.server.auth.scope import Scope
from garrison.server.db import Database, make_engine, migrate
from garrison.server.detections.models import Detection
from garrison.server.reports import statistics
from garrison.server.reports.models import EndpointState
from garrison.server.units.models import Unit

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
CHUNK = 10_000
NAMES = [f"Win.Trojan.Agent-{n}" for n in range(40)] + ["Eicar-Test-Signature", "Doc.Macro.Downloader"]
KINDS = ["clamav", "yara", "hash", "builtin"]


def _units(connection: Any) -> list[int]:
    """A province, 20 departments, 10 units under each: the ids of the 221 units."""
    rows: list[dict[str, Any]] = [{"id": 1, "path": "/1/", "name": "Tỉnh", "kind": "province", "parent_id": None}]
    next_id = 2
    for department in range(20):
        dep = next_id
        rows.append({"id": dep, "path": f"/1/{dep}/", "name": f"Sở {department}", "kind": "department", "parent_id": 1})
        next_id += 1
        for unit in range(10):
            rows.append(
                {
                    "id": next_id,
                    "path": f"/1/{dep}/{next_id}/",
                    "name": f"Đơn vị {unit}",
                    "kind": "unit",
                    "parent_id": dep,
                }
            )
            next_id += 1
    for row in rows:
        row |= {"declared_servers": 2, "declared_workstations": 45, "declared_other": 3}
    connection.execute(insert(Unit.__table__), rows)  # type: ignore[arg-type]
    return [int(r["id"]) for r in rows]


def _agents(
    connection: Any, unit_ids: list[int], count: int, now: datetime, rng: random.Random
) -> list[tuple[str, int]]:
    agents = []
    rows = []
    for n in range(count):
        agent_id = str(uuid.UUID(int=rng.getrandbits(128)))
        unit = rng.choice(unit_ids)
        revoked = rng.random() < 0.02
        rows.append(
            {
                "id": agent_id,
                "unit_id": unit,
                "secret_hash": "0" * 64,
                "hostname": f"may-{n:05d}",
                "os": "Linux",
                "os_version": "Debian 12",
                "agent_version": "1.0",
                "enrolled_at": now - timedelta(days=rng.uniform(0, 700)),
                "last_seen_at": now
                - timedelta(seconds=rng.uniform(0, 120) if rng.random() < 0.9 else rng.uniform(1e3, 1e6)),
                "inventory": {},
                "realtime_enabled": rng.random() < 0.9,
                "firewall_enabled": rng.choice([True, True, False, None]),
                "signature_date": None if rng.random() < 0.01 else now - timedelta(days=rng.expovariate(1 / 4)),
                "revoked": revoked,
                "revoked_at": now - timedelta(days=rng.uniform(0, 300)) if revoked else None,
                "policy_revision": "",
                "heartbeat_seconds": 60.0,
                "open_tasks": False,
                "update_error": "",
            }
        )
        agents.append((agent_id, unit))
    for chunk in _chunks(rows):
        connection.execute(insert(Agent.__table__), chunk)  # type: ignore[arg-type]
    return agents


def _detections(connection: Any, agents: list[tuple[str, int]], count: int, now: datetime, rng: random.Random) -> None:
    def row() -> dict[str, Any]:
        agent_id, unit = rng.choice(agents)
        action = rng.choices(["quarantine", "delete", "report"], [6, 1, 3])[0]
        triage = rng.choices(["new", "resolved", "false_positive"], [6, 3, 1])[0]
        occurred = now - timedelta(seconds=rng.uniform(0, 365 * 86400))
        return {
            "id": str(uuid.UUID(int=rng.getrandbits(128))),
            "agent_id": agent_id,
            "unit_id": unit,
            "occurred_at": occurred,
            "received_at": occurred,
            "path": "/home/user/Tải về/hoá đơn.zip",
            "chain": [],
            "name": rng.choice(NAMES),
            "kind": rng.choice(KINDS),
            "size": 68,
            "action": action,
            "action_ok": rng.random() < 0.97,
            "triage": triage,
            "triaged_at": occurred + timedelta(hours=rng.uniform(0, 72)) if triage != "new" else None,
        }

    for start in range(0, count, CHUNK):
        connection.execute(insert(Detection.__table__), [row() for _ in range(min(CHUNK, count - start))])  # type: ignore[arg-type]


def _endpoint_states(connection: Any, unit_ids: list[int], agents: int, now: datetime, rng: random.Random) -> None:
    """A year of daily states for every unit, as the server's recording pass leaves them."""
    today = now.date()
    per_unit = max(1, agents // len(unit_ids))
    rows = []
    for back in range(365):
        for unit_id in unit_ids:
            active = per_unit - rng.randint(0, per_unit // 10)
            online = max(0, active - rng.randint(0, 5))
            rows.append(
                {
                    "day": today - timedelta(days=back),
                    "unit_id": unit_id,
                    "declared_servers": 2,
                    "declared_workstations": active,
                    "declared_other": 0,
                    "active": active,
                    "online": online,
                    "protected": max(0, online - rng.randint(0, 2)),
                    "realtime_on": online,
                    "firewall_on": max(0, online - 1),
                    "firewall_unknown": 1,
                    "signatures_7": rng.randint(0, 3),
                    "signatures_15": rng.randint(0, 1),
                    "recorded_at": now - timedelta(days=back),
                }
            )
    for chunk in _chunks(rows):
        connection.execute(insert(EndpointState.__table__), chunk)  # type: ignore[arg-type]


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def _time(database: Database, unit_id: int | None, start: datetime, end: datetime, runs: int) -> tuple[float, Any]:
    timings = []
    result = None
    for _ in range(runs + 1):
        with database.session() as session:
            began = time.perf_counter()
            result = statistics.compute(session, Scope.whole_tree(), unit_id, start, end)
            timings.append(time.perf_counter() - began)
    measured = sorted(timings[1:])  # the median (this file's name hides the standard library's statistics)
    return measured[len(measured) // 2], result


def run(engine: Engine, agents: int, detections: int, runs: int) -> None:
    migrate(engine)
    rng = random.Random(20261206)
    now = datetime.now(UTC)
    began = time.perf_counter()
    with engine.begin() as connection:
        unit_ids = _units(connection)
        fleet = _agents(connection, unit_ids, agents, now, rng)
        _detections(connection, fleet, detections, now, rng)
        _endpoint_states(connection, unit_ids, agents, now, rng)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    else:
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    print(
        f"{engine.dialect.name}: {agents:,} agents, {detections:,} detections"
        f" loaded in {time.perf_counter() - began:.1f} s"
    )
    database = Database(engine)
    periods = (("quarter", 91, 0), ("year", 365, 0), ("past q.", 182, 91))
    for label, days, ago in periods:
        for scope_label, unit in (("province", None), ("department", 2)):
            end = now - timedelta(days=ago)
            seconds, result = _time(database, unit, end - timedelta(days=days - ago), end, runs)
            print(
                f"  {label:8} {scope_label:10} median {seconds * 1000:8.1f} ms  "
                f"({result.current.detections:,} detections, {result.endpoints.active:,} computers)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help=f"use a new database on {POSTGRES}")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--detections", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not args.postgres:
        with tempfile.TemporaryDirectory() as directory:
            engine = make_engine(f"sqlite:///{Path(directory) / 'bench.db'}")
            run(engine, args.agents, args.detections, args.runs)
            engine.dispose()
        return
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    name = f"garrison_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        engine = make_engine(admin.url.set(database=name).render_as_string(hide_password=False))
        run(engine, args.agents, args.detections, args.runs)
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
