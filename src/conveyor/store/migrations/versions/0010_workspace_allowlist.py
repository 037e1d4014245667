"""workspaces.outbound_allowlist: where a workspace's steps may connect

Revision ID: 0010
Revises: 0009

A list of hosts (``example.com``, ``*.example.com``) and networks (CIDR) set by the
workspace's admins; NULL or empty: no list of its own (the operator's rules alone apply).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conveyor.store.tables

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_JSON = (
    sa.JSON()
    .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    .with_variant(conveyor.store.tables.JsonText(), "sqlite")
)


def upgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("outbound_allowlist", _JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("outbound_allowlist")
