"""signature sources, local signatures, signature generation

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 09:12:40.118204
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signature_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("upload", "watched", "upstream", "local", name="sourcekind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("origin", sa.String(length=2048), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("licence", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("signatures", sa.Integer(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("download_sha256", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_by_name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_signature_sources_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_signature_sources_name")),
        sa.UniqueConstraint("slug", name=op.f("uq_signature_sources_slug")),
    )
    op.create_table(
        "local_signatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Enum("hash", "yara", name="localkind", native_enum=False, length=8), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("algorithm", sa.String(length=8), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("rule", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(length=1024), nullable=False),
        sa.Column("added_by", sa.Integer(), nullable=True),
        sa.Column("added_by_name", sa.String(length=255), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_by_name", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["added_by"], ["users.id"], name=op.f("fk_local_signatures_added_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_local_signatures")),
    )
    with op.batch_alter_table("local_signatures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_local_signatures_digest"), ["digest"], unique=False)

    op.create_table(
        "signature_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signature_state")),
    )
    state = sa.table("signature_state", sa.column("id", sa.Integer()), sa.column("generation", sa.BigInteger()))
    op.bulk_insert(state, [{"id": 1, "generation": 0}])


def downgrade() -> None:
    op.drop_table("signature_state")
    with op.batch_alter_table("local_signatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_local_signatures_digest"))

    op.drop_table("local_signatures")
    op.drop_table("signature_sources")
