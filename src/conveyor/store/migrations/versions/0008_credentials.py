"""credentials: named, typed secrets per workspace, encrypted at rest

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conveyor.store.tables

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_JSON = (
    sa.JSON()
    .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    .with_variant(conveyor.store.tables.JsonText(), "sqlite")
)
_TIME = conveyor.store.tables.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("public", _JSON, nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", _TIME(), nullable=False),
        sa.Column("updated_at", _TIME(), nullable=False),
        sa.Column("updated_by", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_credentials_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_credentials_workspace_id_name")),
    )


def downgrade() -> None:
    op.drop_table("credentials")
