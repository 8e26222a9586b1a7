"""federation: parent and child servers, received aggregates

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "federation_children",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("join_token_hash", sa.String(length=64), nullable=True),
        sa.Column("join_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("public_key", sa.String(length=64), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("child_clock", sa.DateTime(timezone=True), nullable=True),
        sa.Column("software_version", sa.String(length=64), nullable=False),
        sa.Column("push_seconds", sa.Float(), nullable=True),
        sa.Column("last_address", sa.String(length=64), nullable=True),
        sa.Column("aggregates", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_federation_children_created_by_users"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_federation_children_unit_id_units"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_federation_children")),
        sa.UniqueConstraint("join_token_hash", name=op.f("uq_federation_children_join_token_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_federation_children_name")),
    )
    op.create_index(op.f("ix_federation_children_unit_id"), "federation_children", ["unit_id"])
    op.create_table(
        "federation_received_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("child_id", sa.Integer(), nullable=False),
        sa.Column("child_submission_id", sa.Integer(), nullable=False),
        sa.Column("child_version", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_id"],
            ["federation_children.id"],
            name=op.f("fk_federation_received_reports_child_id_federation_children"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["report_submissions.id"],
            name=op.f("fk_federation_received_reports_submission_id_report_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_federation_received_reports")),
        sa.UniqueConstraint(
            "child_id",
            "child_submission_id",
            "child_version",
            name=op.f("uq_federation_received_reports_child_id"),
        ),
    )
    op.create_index(
        op.f("ix_federation_received_reports_submission_id"), "federation_received_reports", ["submission_id"]
    )
    op.create_table(
        "federation_acknowledged",
        sa.Column("link", sa.String(length=36), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["report_submissions.id"],
            name=op.f("fk_federation_acknowledged_submission_id_report_submissions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("link", "submission_id", name=op.f("pk_federation_acknowledged")),
    )


def downgrade() -> None:
    op.drop_table("federation_acknowledged")
    op.drop_index(op.f("ix_federation_received_reports_submission_id"), table_name="federation_received_reports")
    op.drop_table("federation_received_reports")
    op.drop_index(op.f("ix_federation_children_unit_id"), table_name="federation_children")
    op.drop_table("federation_children")
