"""Field types shared by the wire shapes of every REST module."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, Field


def _aware(moment: datetime) -> datetime:
    # SQLite gives back the stored UTC moments without their zone; the document promises RFC 3339 date-times.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_aware)]
"""A moment sent with its zone (UTC when the database dropped it)."""

ID_MAX = 2**31 - 1
"""The largest row id (and count) a 32-bit INTEGER column holds on PostgreSQL; beyond it a lookup is a 422."""

Id = Annotated[int, Field(ge=1, le=ID_MAX)]
PathId = Annotated[int, Path(ge=1, le=ID_MAX)]
