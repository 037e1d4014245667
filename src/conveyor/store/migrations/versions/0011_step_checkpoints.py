"""step_checkpoints: what a step finished inside itself, reused by its later attempts

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conveyor.store.tables

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_JSON = (
    sa.JSON()
    .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    .with_variant(conveyor.store.tables.JsonText(), "sqlite")
)


def upgrade() -> None:
    op.create_table(
        "step_checkpoints",
        sa.Column("execution_id", sa.String(length=32), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", _JSON, nullable=True),
        sa.Column("created_at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_step_checkpoints_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("execution_id", "node_id", "key", name=op.f("pk_step_checkpoints")),
    )


def downgrade() -> None:
    op.drop_table("step_checkpoints")
