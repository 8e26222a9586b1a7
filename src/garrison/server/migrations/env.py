"""Alembic environment: migrations run on the engine the server hands over (``config.attributes['engine']``)."""

from __future__ import annotations

from alembic import context

from garrison.server import models  # noqa: F401 - registers every table on Base.metadata
from garrison.server.db import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
