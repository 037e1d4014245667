"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conveyor.store.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
        sa.UniqueConstraint("name", name=op.f("uq_workspaces_name")),
    )
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("updated_at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("executions_finished", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("executions_succeeded", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("executions_failed", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("duration_total_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_executed_at", conveyor.store.tables.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_workflows_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_workflows_workspace_id_name")),
    )
    op.create_table(
        "workflow_versions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "definition",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=False,
        ),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_workflow_versions_workflow_id_workflows"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_versions")),
        sa.UniqueConstraint(
            "workflow_id", "version", name=op.f("uq_workflow_versions_workflow_id_version")
        ),
    )
    op.create_table(
        "executions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger_type", sa.String(length=16), nullable=False),
        sa.Column(
            "input",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "result",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "error",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=True,
        ),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("available_at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("created_at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("started_at", conveyor.store.tables.UTCDateTime(), nullable=True),
        sa.Column("finished_at", conveyor.store.tables.UTCDateTime(), nullable=True),
        sa.Column("deadline_at", conveyor.store.tables.UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_number", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("lease_expires_at", conveyor.store.tables.UTCDateTime(), nullable=True),
        sa.Column(
            "cancel_requested", sa.Boolean(), server_default=sa.text("(false)"), nullable=False
        ),
        sa.Column("recoveries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("concurrency_key", sa.String(length=200), nullable=True),
        sa.Column("key_limit", sa.Integer(), nullable=True),
        sa.Column("workflow_limit", sa.Integer(), nullable=True),
        sa.Column("rate_limit", sa.Integer(), nullable=True),
        sa.Column("rate_period_seconds", sa.Float(), nullable=True),
        sa.Column("wait_reason", sa.Text(), nullable=True),
        sa.Column("parent_execution_id", sa.String(length=32), nullable=True),
        sa.Column("parent_node_id", sa.String(length=100), nullable=True),
        sa.Column("retry_of", sa.String(length=32), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("event_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("steps_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("steps_succeeded", sa.Integer(), server_default="0", nullable=False),
        sa.Column("steps_failed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("steps_skipped", sa.Integer(), server_default="0", nullable=False),
        sa.Column("steps_running", sa.Integer(), server_default="0", nullable=False),
        sa.Column("usage_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("usage_api_calls", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["workflow_versions.id"],
            name=op.f("fk_executions_version_id_workflow_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["workflows.id"], name=op.f("fk_executions_workflow_id_workflows")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_executions_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
        sa.UniqueConstraint(
            "workflow_id", "idempotency_key", name=op.f("uq_executions_workflow_id_idempotency_key")
        ),
    )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_executions_key_status", ["concurrency_key", "status"], unique=False
        )
        batch_op.create_index("ix_executions_lease", ["status", "lease_expires_at"], unique=False)
        batch_op.create_index("ix_executions_ready", ["status", "available_at"], unique=False)
        batch_op.create_index(
            "ix_executions_workflow_created", ["workflow_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_executions_workflow_started", ["workflow_id", "started_at"], unique=False
        )
        batch_op.create_index(
            "ix_executions_workflow_status", ["workflow_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_executions_workspace_created", ["workspace_id", "created_at"], unique=False
        )

    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("execution_id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column(
            "data",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=False,
        ),
        sa.Column("created_at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_events_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("execution_id", "seq", name=op.f("uq_events_execution_id_seq")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("execution_id", sa.String(length=32), nullable=True),
        sa.Column("node_id", sa.String(length=100), nullable=True),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "data",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=True,
        ),
        sa.Column("created_at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_notifications_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_notifications_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notifications_workspace_created", ["workspace_id", "created_at"], unique=False
        )

    op.create_table(
        "signals",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("execution_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "data",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=True,
        ),
        sa.Column("created_at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("consumed_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_signals_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
    )
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.create_index("ix_signals_execution_name", ["execution_id", "name"], unique=False)

    op.create_table(
        "steps",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("execution_id", sa.String(length=32), nullable=False),
        sa.Column("node_id", sa.String(length=100), nullable=False),
        sa.Column("node_type", sa.String(length=100), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "input",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "output",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "error",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=True,
        ),
        sa.Column(
            "logs",
            sa.JSON()
            .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
            .with_variant(conveyor.store.tables.JsonText(), "sqlite"),
            nullable=True,
        ),
        sa.Column("branch", sa.String(length=100), nullable=True),
        sa.Column("continued", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("started_at", conveyor.store.tables.UTCDateTime(), nullable=True),
        sa.Column("finished_at", conveyor.store.tables.UTCDateTime(), nullable=True),
        sa.Column("wait_until", conveyor.store.tables.UTCDateTime(), nullable=True),
        sa.Column("wait_signal", sa.String(length=200), nullable=True),
        sa.Column("usage_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("usage_api_calls", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_steps_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_steps")),
        sa.UniqueConstraint(
            "execution_id", "node_id", "attempt", name=op.f("uq_steps_execution_id_node_id_attempt")
        ),
    )


def downgrade() -> None:

    op.drop_table("steps")
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.drop_index("ix_signals_execution_name")

    op.drop_table("signals")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_workspace_created")

    op.drop_table("notifications")
    op.drop_table("events")
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_workspace_created")
        batch_op.drop_index("ix_executions_workflow_status")
        batch_op.drop_index("ix_executions_workflow_started")
        batch_op.drop_index("ix_executions_workflow_created")
        batch_op.drop_index("ix_executions_ready")
        batch_op.drop_index("ix_executions_lease")
        batch_op.drop_index("ix_executions_key_status")

    op.drop_table("executions")
    op.drop_table("workflow_versions")
    op.drop_table("workflows")
    op.drop_table("workspaces")
