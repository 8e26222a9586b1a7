"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from garrison.server.db import Base, Database, make_engine, migrate
from garrison.server.units.models import Unit, UnitKind


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_every_table_exists(engine: Engine) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_concurrent_sqlite_writers_wait_instead_of_failing(tmp_path: Path) -> None:
    """A request that read, then writes after another request committed, must wait, not fail "database is locked".

    A reads; B then reads, writes and commits (or, as Garrison does it, waits for A); A writes last.
    """
    engine = make_engine(f"sqlite:///{tmp_path / 'busy.db'}")
    migrate(engine)
    database = Database(engine)
    with database.session() as session:
        session.add(Unit(name="Tỉnh", kind=UnitKind.PROVINCE, path="/"))
    a_has_read, b_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def request_a() -> None:
        try:
            with database.session() as session:
                unit = session.scalars(select(Unit)).one()
                a_has_read.set()
                b_done.wait(timeout=1)  # B either finished (deferred transactions) or is queued behind A
                unit.declared_servers += 1
        except BaseException as exc:
            errors.append(exc)

    def request_b() -> None:
        a_has_read.wait(timeout=10)
        try:
            with database.session() as session:
                session.scalars(select(Unit)).one().declared_servers += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            b_done.set()

    threads = [threading.Thread(target=request_a), threading.Thread(target=request_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.session() as session:
        assert session.scalars(select(Unit)).one().declared_servers == 2
    engine.dispose()


def test_upgrading_keeps_the_rows_of_changed_tables(tmp_path: Path) -> None:
    """On SQLite, changing the agents table copies it and drops the old one: detections, which cascade from agents,
    must survive (foreign keys are off during migrations, and checked before they commit)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(engine, "0002")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO units (id, path, name, kind, declared_servers, declared_workstations, "
                "declared_other, created_at) VALUES (1, '/1/', 'Tỉnh', 'province', 0, 0, 0, '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO agents (id, unit_id, secret_hash, hostname, os, os_version, agent_version, "
                "enrolled_at, inventory, realtime_enabled, revoked) VALUES ('a1', 1, 'x', 'may-01', '', "
                "'', '', '2026-01-01', '{}', 0, 0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO detections (id, agent_id, unit_id, occurred_at, received_at, path, chain, "
                "name, kind, size, action, action_ok, triage) VALUES ('d1', 'a1', 1, '2026-01-01', "
                "'2026-01-01', '/x', '[]', 'Eicar', 'builtin', 68, 'report', 1, 'new')"
            )
        )
    migrate(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM detections")).scalar() == 1
        assert connection.execute(text("SELECT policy_revision FROM agents")).scalar() == ""
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()
