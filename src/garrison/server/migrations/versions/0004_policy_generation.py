"""policy generation, open tasks flag

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 20:31:16.415690
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_state")),
    )
    state = sa.table("policy_state", sa.column("id", sa.Integer()), sa.column("generation", sa.BigInteger()))
    op.bulk_insert(state, [{"id": 1, "generation": 0}])
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_tasks", sa.Boolean(), server_default=sa.false(), nullable=False))
    # Agents with tasks waiting from before this revision keep getting them.
    op.execute(
        "UPDATE agents SET open_tasks = true WHERE id IN "
        "(SELECT agent_id FROM task_runs WHERE state IN ('queued', 'sent'))"
    )


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("open_tasks")

    op.drop_table("policy_state")
