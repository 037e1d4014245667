"""inbox: notifications can be read (and sent to one user), tasks for people

Revision ID: 0009
Revises: 0008

``notifications`` gains its reader (``read_at``, ``read_by``), an optional recipient, and
the idempotency key of the step that made it (``execution id : node id``, unique): a retried
step finds its notification instead of adding a second. ``tasks`` are made by task.create
steps the same way, and stay open until someone marks them done; a task outlives its
execution (retention deletes executions): only its link is cleared.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import conveyor.store.tables

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TIME = conveyor.store.tables.UTCDateTime
_UNREAD = sa.text("read_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("read_at", _TIME(), nullable=True))
        batch_op.add_column(sa.Column("read_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_notifications_idempotency_key"), ["idempotency_key"]
        )
        batch_op.create_index(
            "ix_notifications_unread",
            ["workspace_id", "recipient_id"],
            unique=False,
            postgresql_where=_UNREAD,
            sqlite_where=_UNREAD,
        )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("execution_id", sa.String(length=32), nullable=True),
        sa.Column("node_id", sa.String(length=100), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("assignee_id", sa.String(length=32), nullable=True),
        sa.Column("assignee_email", sa.String(length=320), nullable=True),
        sa.Column("due_at", _TIME(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("done_at", _TIME(), nullable=True),
        sa.Column("done_by", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_tasks_execution_id_executions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_tasks_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_tasks_idempotency_key")),
    )
    op.create_index(
        "ix_tasks_workspace_status",
        "tasks",
        ["workspace_id", "status", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_workspace_status", table_name="tasks")
    op.drop_table("tasks")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_unread")
        batch_op.drop_constraint(batch_op.f("uq_notifications_idempotency_key"), type_="unique")
        batch_op.drop_column("idempotency_key")
        batch_op.drop_column("read_by")
        batch_op.drop_column("read_at")
        batch_op.drop_column("recipient_id")
