"""Units of the organisation tree, each with the endpoints it declares it has.

Subtrees are found through a materialised ``path`` (``/1/4/9/``): one indexed prefix match on both SQLite and
PostgreSQL, where a recursive query would differ between them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, DateTime, Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from garrison.server.db import Base, utcnow
from garrison.server.db import enum_values as _values


class UnitKind(StrEnum):
    PROVINCE = "province"
    DEPARTMENT = "department"
    DISTRICT = "district"
    UNIT = "unit"


class Unit(Base):
    __tablename__ = "units"
    __table_args__ = (
        UniqueConstraint("parent_id", "name"),
        CheckConstraint("declared_servers >= 0 AND declared_workstations >= 0 AND declared_other >= 0", "declared"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    path: Mapped[str] = mapped_column(String(1024), index=True, default="")
    name: Mapped[str] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(String(64), unique=True)
    kind: Mapped[UnitKind] = mapped_column(Enum(UnitKind, native_enum=False, length=16, values_callable=_values))
    declared_servers: Mapped[int] = mapped_column(Integer, default=0)
    declared_workstations: Mapped[int] = mapped_column(Integer, default=0)
    declared_other: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def declared_total(self) -> int:
        return self.declared_servers + self.declared_workstations + self.declared_other
