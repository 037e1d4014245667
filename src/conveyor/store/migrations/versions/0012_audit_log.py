"""audit_log: who changed what, when and from where; append-only on both dialects

Revision ID: 0012
Revises: 0011

A trigger refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL), so not even a bug in
Conveyor can rewrite history; an operator's retention job drops the trigger in its own
transaction to prune (docs/audit.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conveyor.store.tables

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_JSON = (
    sa.JSON()
    .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    .with_variant(conveyor.store.tables.JsonText(), "sqlite")
)
_REFUSAL = "audit_log is append-only"
_POSTGRES = (
    "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION '{_REFUSAL}'; END $$",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
)
_SQLITE = tuple(
    f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
    f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
    for verb in ("UPDATE", "DELETE")
)


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=32), nullable=True),
        sa.Column("at", conveyor.store.tables.UTCDateTime(), nullable=False),
        sa.Column("actor_user_id", sa.String(length=32), nullable=True),
        sa.Column("actor_api_key_id", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=320), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=200), nullable=True),
        sa.Column("details", _JSON, nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=400), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_workspace_id", "audit_log", ["workspace_id", "id"])
    op.create_index("ix_audit_log_actor_user_id", "audit_log", ["actor_user_id", "id"])
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES if postgres else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.drop_table("audit_log")
