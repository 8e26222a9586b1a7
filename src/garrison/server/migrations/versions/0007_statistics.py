"""statistics: agents' firewall state as a column, and the index the period figures read detections through

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-10 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("firewall_enabled", sa.Boolean(), nullable=True))
    # What the agents already reported, from their last inventory (JSON true/false; absent or null stays NULL).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE agents SET firewall_enabled = (inventory->>'firewall_enabled')::boolean "
            "WHERE inventory->>'firewall_enabled' IN ('true', 'false')"
        )
    else:
        op.execute(
            "UPDATE agents SET firewall_enabled = json_extract(inventory, '$.firewall_enabled') "
            "WHERE json_type(inventory, '$.firewall_enabled') IN ('true', 'false')"
        )
    op.create_index("ix_detections_unit_id_occurred_at", "detections", ["unit_id", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_detections_unit_id_occurred_at", table_name="detections")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("firewall_enabled")
