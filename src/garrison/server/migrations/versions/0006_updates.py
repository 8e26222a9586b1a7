"""update channel: TUF metadata, targets, releases, agent releases, rollout, agents' update status

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 05:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_STAGE = sa.Enum("canary", "general", "pulled", name="stage", native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "tuf_metadata",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuf_metadata")),
        sa.UniqueConstraint("role", "version", name=op.f("uq_tuf_metadata_role")),
    )
    op.create_table(
        "update_targets",
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("custom", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("path", name=op.f("pk_update_targets")),
    )
    op.create_index(op.f("ix_update_targets_sha256"), "update_targets", ["sha256"])
    op.create_table(
        "signature_releases",
        sa.Column("number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("content_size", sa.BigInteger(), nullable=False),
        sa.Column("compressed_size", sa.BigInteger(), nullable=False),
        sa.Column("signatures", sa.Integer(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("stage", _STAGE, nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("promoted_by", sa.Integer(), nullable=True),
        sa.Column("pulled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pulled_by", sa.Integer(), nullable=True),
        sa.Column("restores", sa.Integer(), nullable=True),
        sa.Column("hold_reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_signature_releases_created_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["promoted_by"], ["users.id"], name=op.f("fk_signature_releases_promoted_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["pulled_by"], ["users.id"], name=op.f("fk_signature_releases_pulled_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("number", name=op.f("pk_signature_releases")),
    )
    op.create_index(op.f("ix_signature_releases_available_at"), "signature_releases", ["available_at"])
    op.create_table(
        "agent_releases",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("target_path", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("stage", _STAGE, nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_agent_releases_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_agent_releases")),
    )
    op.create_table(
        "rollout_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("canary_group_id", sa.Integer(), nullable=True),
        sa.Column("canary_hours", sa.Float(), nullable=False),
        sa.Column("auto_promote", sa.Boolean(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["canary_group_id"],
            ["agent_groups.id"],
            name=op.f("fk_rollout_settings_canary_group_id_agent_groups"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_settings")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signature_release", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("signature_installed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("update_checked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("update_error", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("update_error_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_agents_signature_release"), ["signature_release"])


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agents_signature_release"))
        batch_op.drop_column("update_error_at")
        batch_op.drop_column("update_error")
        batch_op.drop_column("update_checked_at")
        batch_op.drop_column("signature_installed_at")
        batch_op.drop_column("signature_release")
    op.drop_table("rollout_settings")
    op.drop_table("agent_releases")
    op.drop_index(op.f("ix_signature_releases_available_at"), table_name="signature_releases")
    op.drop_table("signature_releases")
    op.drop_index(op.f("ix_update_targets_sha256"), table_name="update_targets")
    op.drop_table("update_targets")
    op.drop_table("tuf_metadata")
