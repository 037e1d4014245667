"""crash attribution: suspects run alone, crashes counted only then

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("suspect", sa.Boolean(), server_default=sa.text("(false)"), nullable=False)
        )
        batch_op.add_column(sa.Column("crashes", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(
            "ix_executions_suspect",
            ["status"],
            unique=False,
            postgresql_where=sa.text("suspect"),
            sqlite_where=sa.text("suspect"),
        )


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_suspect")
        batch_op.drop_column("crashes")
        batch_op.drop_column("suspect")
