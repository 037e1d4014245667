"""triggers: schedules with one row per occurrence, webhooks with their deliveries

Revision ID: 0007
Revises: 0006

``schedule_fires`` is unique on (schedule, nominal time): however many schedulers run, an
occurrence starts at most one execution. ``executions.trigger_id`` names the schedule or
webhook that started an execution. Deleted triggers keep their rows (``deleted_at``), so a
deleted webhook's token is never handed out again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conveyor.store.tables

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_JSON = (
    sa.JSON()
    .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    .with_variant(conveyor.store.tables.JsonText(), "sqlite")
)
_TIME = conveyor.store.tables.UTCDateTime
_LIVE = sa.text("deleted_at IS NULL")
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _owned() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("workflow_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
    ]


def _owners(table: str) -> list[sa.ForeignKeyConstraint]:
    return [
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f(f"fk_{table}_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f(f"fk_{table}_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "schedules",
        *_owned(),
        sa.Column("spec", _JSON, nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("next_fire_at", _TIME(), nullable=True),
        sa.Column("last_fire_at", _TIME(), nullable=True),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("updated_at", _TIME(), nullable=False),
        sa.Column("deleted_at", _TIME(), nullable=True),
        *_owners("schedules"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    op.create_index(
        "ix_schedules_due",
        "schedules",
        ["next_fire_at"],
        unique=False,
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )
    op.create_index(
        "uq_schedules_workflow_key",
        "schedules",
        ["workflow_id", "key"],
        unique=True,
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )
    op.create_table(
        "schedule_fires",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("schedule_id", sa.String(length=32), nullable=False),
        sa.Column("nominal_at", _TIME(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("execution_id", sa.String(length=32), nullable=True),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_fires_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_fires")),
        sa.UniqueConstraint(
            "schedule_id", "nominal_at", name=op.f("uq_schedule_fires_schedule_id_nominal_at")
        ),
    )
    op.create_index(
        "ix_schedule_fires_buffered",
        "schedule_fires",
        ["schedule_id"],
        unique=False,
        postgresql_where=sa.text("status = 'buffered'"),
        sqlite_where=sa.text("status = 'buffered'"),
    )
    op.create_table(
        "webhooks",
        *_owned(),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("spec", _JSON, nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("last_delivery_at", _TIME(), nullable=True),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("updated_at", _TIME(), nullable=False),
        sa.Column("deleted_at", _TIME(), nullable=True),
        *_owners("webhooks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
        sa.UniqueConstraint("token", name=op.f("uq_webhooks_token")),
    )
    op.create_index(
        "uq_webhooks_workflow_key",
        "webhooks",
        ["workflow_id", "key"],
        unique=True,
        postgresql_where=_LIVE,
        sqlite_where=_LIVE,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", _SERIAL, autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=True),
        sa.Column("received_at", _TIME(), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("execution_id", sa.String(length=32), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_webhook_received",
        "webhook_deliveries",
        ["webhook_id", "received_at"],
        unique=False,
    )
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trigger_id", sa.String(length=32), nullable=True))
        batch_op.create_index(
            "ix_executions_trigger_created",
            ["trigger_id", "created_at"],
            unique=False,
            postgresql_where=sa.text("trigger_id IS NOT NULL"),
            sqlite_where=sa.text("trigger_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_trigger_created")
        batch_op.drop_column("trigger_id")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("schedule_fires")
    op.drop_table("schedules")
