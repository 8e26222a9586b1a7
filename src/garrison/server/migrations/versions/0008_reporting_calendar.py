"""reporting calendar: submitted reports (frozen figures) and reporting lines

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("quarter", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_by", sa.Integer(), nullable=True),
        sa.Column("submitted_by_name", sa.String(length=255), nullable=False),
        sa.Column("received_from", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["submitted_by"], ["users.id"], name=op.f("fk_report_submissions_submitted_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_report_submissions_unit_id_units"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_submissions")),
        sa.UniqueConstraint("unit_id", "year", "quarter", "version", name=op.f("uq_report_submissions_unit_id")),
    )
    op.create_index(op.f("ix_report_submissions_unit_id"), "report_submissions", ["unit_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_report_submissions_unit_id"), table_name="report_submissions")
    op.drop_table("report_submissions")
