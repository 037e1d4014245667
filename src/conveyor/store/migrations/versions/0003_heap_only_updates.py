"""room for heap-only updates on PostgreSQL

Revision ID: 0003
Revises: 0002

A runner rewrites its execution row several times per execution and each step row once.
When no indexed column changes and the page has room, PostgreSQL updates the row in place
(a heap-only tuple) without touching any of the executions table's indexes. Leaving room
in each page makes that the common case. Storage parameters only: SQLite has none.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE executions SET (fillfactor = 70)")
        op.execute("ALTER TABLE steps SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE executions RESET (fillfactor)")
        op.execute("ALTER TABLE steps RESET (fillfactor)")
