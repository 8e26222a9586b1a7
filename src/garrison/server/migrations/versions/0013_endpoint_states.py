"""statistics: the endpoints' state per unit and day, for past periods

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COUNTS = (
    "declared_servers",
    "declared_workstations",
    "declared_other",
    "active",
    "online",
    "protected",
    "realtime_on",
    "firewall_on",
    "firewall_unknown",
    "signatures_7",
    "signatures_15",
)


def upgrade() -> None:
    op.create_table(
        "endpoint_states",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in COUNTS),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_endpoint_states_unit_id_units"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("day", "unit_id", name=op.f("pk_endpoint_states")),
    )


def downgrade() -> None:
    op.drop_table("endpoint_states")
