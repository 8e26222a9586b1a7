"""policies, groups, allow-list, tasks, samples, quarantined files

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 19:33:20.572480
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "allowed_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.Column("detection_name", sa.String(length=255), nullable=True),
        sa.Column("added_by", sa.Integer(), nullable=True),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["added_by"], ["users.id"], name=op.f("fk_allowed_files_added_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowed_files")),
        sa.UniqueConstraint("sha256", name=op.f("uq_allowed_files_sha256")),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("owner_unit_id", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_policies_created_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["owner_unit_id"], ["units.id"], name=op.f("fk_policies_owner_unit_id_units"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
        sa.UniqueConstraint("owner_unit_id", "name", name=op.f("uq_policies_owner_unit_id")),
    )
    with op.batch_alter_table("policies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policies_owner_unit_id"), ["owner_unit_id"], unique=False)

    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("scan", "update", "restore", "delete", "collect", name="taskkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("comment", sa.String(length=1024), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_by_name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_tasks_created_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_tasks_unit_id_units"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tasks_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_tasks_unit_id"), ["unit_id"], unique=False)

    op.create_table(
        "agent_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policies.id"], name=op.f("fk_agent_groups_policy_id_policies"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_agent_groups_unit_id_units"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_groups")),
        sa.UniqueConstraint("unit_id", "name", name=op.f("uq_agent_groups_unit_id")),
    )
    with op.batch_alter_table("agent_groups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_groups_policy_id"), ["policy_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_agent_groups_unit_id"), ["unit_id"], unique=False)

    op.create_table(
        "policy_assignments",
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("policy_id", sa.Integer(), nullable=False),
        sa.Column("assigned_by", sa.Integer(), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assigned_by"], ["users.id"], name=op.f("fk_policy_assignments_assigned_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["policies.id"], name=op.f("fk_policy_assignments_policy_id_policies"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_policy_assignments_unit_id_units"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("unit_id", name=op.f("pk_policy_assignments")),
    )
    with op.batch_alter_table("policy_assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_assignments_policy_id"), ["policy_id"], unique=False)

    op.create_table(
        "samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("blob", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_samples_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_samples_task_id_tasks"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_samples_unit_id_units"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samples")),
        sa.UniqueConstraint("blob", name=op.f("uq_samples_blob")),
    )
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_samples_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_samples_sha256"), ["sha256"], unique=False)
        batch_op.create_index(batch_op.f("ix_samples_task_id"), ["task_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_samples_unit_id"), ["unit_id"], unique=False)

    op.create_table(
        "task_runs",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_task_runs_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name=op.f("fk_task_runs_task_id_tasks"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id", "agent_id", name=op.f("pk_task_runs")),
    )
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.create_index("ix_task_runs_agent_state", ["agent_id", "state"], unique=False)

    op.create_table(
        "quarantined_files",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("detection_id", sa.String(length=36), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "state",
            sa.Enum("quarantined", "restored", "deleted", name="quarantinestate", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("state_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state_task_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_quarantined_files_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["detection_id"],
            ["detections.id"],
            name=op.f("fk_quarantined_files_detection_id_detections"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["state_task_id"], ["tasks.id"], name=op.f("fk_quarantined_files_state_task_id_tasks"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_quarantined_files_unit_id_units"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("agent_id", "item_id", name=op.f("pk_quarantined_files")),
    )
    with op.batch_alter_table("quarantined_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_quarantined_files_quarantined_at"), ["quarantined_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_quarantined_files_state"), ["state"], unique=False)
        batch_op.create_index(batch_op.f("ix_quarantined_files_unit_id"), ["unit_id"], unique=False)

    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("policy_revision", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("heartbeat_seconds", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_agents_group_id"), ["group_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_agents_group_id_agent_groups"), "agent_groups", ["group_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_agents_group_id_agent_groups"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_agents_group_id"))
        batch_op.drop_column("heartbeat_seconds")
        batch_op.drop_column("policy_revision")
        batch_op.drop_column("group_id")

    with op.batch_alter_table("quarantined_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantined_files_unit_id"))
        batch_op.drop_index(batch_op.f("ix_quarantined_files_state"))
        batch_op.drop_index(batch_op.f("ix_quarantined_files_quarantined_at"))

    op.drop_table("quarantined_files")
    with op.batch_alter_table("task_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_task_runs_agent_state")

    op.drop_table("task_runs")
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_samples_unit_id"))
        batch_op.drop_index(batch_op.f("ix_samples_task_id"))
        batch_op.drop_index(batch_op.f("ix_samples_sha256"))
        batch_op.drop_index(batch_op.f("ix_samples_agent_id"))

    op.drop_table("samples")
    with op.batch_alter_table("policy_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policy_assignments_policy_id"))

    op.drop_table("policy_assignments")
    with op.batch_alter_table("agent_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_groups_unit_id"))
        batch_op.drop_index(batch_op.f("ix_agent_groups_policy_id"))

    op.drop_table("agent_groups")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_unit_id"))
        batch_op.drop_index(batch_op.f("ix_tasks_created_at"))

    op.drop_table("tasks")
    with op.batch_alter_table("policies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_policies_owner_unit_id"))

    op.drop_table("policies")
    op.drop_table("allowed_files")
