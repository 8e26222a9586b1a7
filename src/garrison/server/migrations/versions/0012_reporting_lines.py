"""reporting calendar: reporting lines (deadline and reminders per line)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reporting_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("deadline_day", sa.Integer(), nullable=False),
        sa.Column("reminder_days", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by_name", sa.String(length=255), nullable=False),
        sa.CheckConstraint("deadline_day >= 2 AND deadline_day <= 30", name=op.f("ck_reporting_lines_deadline_day")),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_reporting_lines_unit_id_units"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reporting_lines")),
        sa.UniqueConstraint("unit_id", name=op.f("uq_reporting_lines_unit_id")),
    )


def downgrade() -> None:
    op.drop_table("reporting_lines")
