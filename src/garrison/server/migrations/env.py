"""Alembic environment: migrations run on the engine the server hands over (``config.attributes['engine']``).

On SQLite, changing a table means copying it into a new one and dropping the old ("batch" mode). With foreign
keys enforced, that DROP TABLE would first delete every row and fire the ON DELETE actions of the tables that
refer to it (detections cascade from agents, for one): migrations would silently lose data. So on SQLite foreign
keys are switched off for the migration (they can only be switched outside a transaction) and checked as a whole
before it commits.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from garrison.server import models  # noqa: F401 - registers every table on Base.metadata
from garrison.server.db import Base

engine = context.config.attributes["engine"]


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if engine.dialect.name == "sqlite":
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                run(connection)
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration would break {len(broken)} references, e.g. {broken[0]}")
        finally:
            raw.execute("PRAGMA foreign_keys=ON")
else:
    with engine.begin() as connection:
        run(connection)
