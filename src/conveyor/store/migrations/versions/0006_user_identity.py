"""who ran it (a per-user running limit) and where a step stands in its execution

Revision ID: 0006
Revises: 0005

``workspaces.max_running_per_user`` (default 10, NULL for none) is copied onto each
execution a user starts as ``executions.user_limit`` and enforced at claim time;
``steps.step_index`` is the order in which an attempt started within its execution.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_running_per_user", sa.Integer(), server_default="10", nullable=True)
        )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("user_limit", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_executions_user_status"),
            ["workspace_id", "created_by", "status"],
            unique=False,
        )
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("step_index", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_column("step_index")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_executions_user_status"))
        batch_op.drop_column("user_limit")
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("max_running_per_user")
