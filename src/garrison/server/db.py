"""The database: SQLAlchemy 2 engine and sessions over SQLite (default, WAL mode) or PostgreSQL.

Services take a session first and never commit; the request edge (or the command) commits. Migrations are
Alembic's, run on start and by ``garrison server migrate``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Stable constraint names, so that migrations can name what they change on both databases.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def enum_values(enum: type[StrEnum]) -> list[str]:
    """Store enums by value (``unit_admin``), not by Python member name."""
    return [member.value for member in enum]


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so that savepoints and
            # transactional DDL work (the recipe in SQLAlchemy's SQLite documentation).
            connection.isolation_level = None
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # IMMEDIATE: take the write lock when the transaction starts. A deferred transaction that reads and
            # then writes fails at once with "database is locked" when another request committed in between
            # (SQLite cannot upgrade a stale read snapshot, and the busy timeout does not apply to that case);
            # waiting for the lock up front lets the busy timeout queue concurrent requests instead.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # At most 40 sessions at once per process, as many as the threads that run the endpoints; 20 are kept open.
    # Connections past pool_size are closed when returned: with the former pool of 10, a loaded server opened a new
    # PostgreSQL backend for most requests (bench/fleet.py counted 700 connections in 100 s).
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=20)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


#: The PostgreSQL advisory lock that serialises migrations between server processes ("garrison" in ASCII).
MIGRATION_LOCK = 0x6761727269736F6E


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (the newest by default); safe when several processes start together.

    On PostgreSQL a session-level advisory lock is held around the upgrade, on a connection of its own, so that a
    second server process starting at the same moment waits, then finds the schema current and does nothing. On
    SQLite (one host) the migration's transaction starts with ``BEGIN IMMEDIATE`` (see ``make_engine``), which
    already takes the database's write lock before Alembic reads the current revision.
    """
    if engine.dialect.name != "postgresql":
        command.upgrade(alembic_config(engine), revision)
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock:
        lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        try:
            command.upgrade(alembic_config(engine), revision)
        finally:
            # Closing the connection would release it too, but a pooled connection lives on: unlock explicitly.
            lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})


def transaction_lock(session: Session, key: int) -> None:
    """Serialise, between server processes, the work of this transaction that takes the same ``key``, until the
    transaction ends. PostgreSQL: an advisory transaction lock. SQLite: nothing to do, every transaction already
    holds the database's write lock (``BEGIN IMMEDIATE``, see ``make_engine``)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


class Database:
    """An engine (or, in tests, one connection inside a transaction) and its session factory."""

    def __init__(self, bind: Engine | Connection) -> None:
        self.bind = bind
        self.engine = bind if isinstance(bind, Engine) else bind.engine
        # On a connection that is already in a transaction (a test's), commits become savepoint releases.
        self.sessions = sessionmaker(bind=bind, expire_on_commit=False, join_transaction_mode="create_savepoint")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed when the block ends without error, rolled back otherwise."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
