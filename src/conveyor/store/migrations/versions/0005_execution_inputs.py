"""execution inputs in a table of their own

Revision ID: 0005
Revises: 0004

Every transition updates the executions row, and SQLite rewrites a whole row on any update,
overflow pages included: an input of 25 MB kept in that row was written again at each step
(hundreds of MB through the WAL, and a file twice the size). Written once in its own row,
it is never rewritten.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import conveyor.store.tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_JSON = (
    sa.JSON()
    .with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    .with_variant(conveyor.store.tables.JsonText(), "sqlite")
)


def upgrade() -> None:
    op.create_table(
        "execution_inputs",
        sa.Column("execution_id", sa.String(length=32), nullable=False),
        sa.Column("input", _JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_execution_inputs_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_execution_inputs")),
    )
    op.execute(
        "INSERT INTO execution_inputs (execution_id, input) SELECT id, input FROM executions"
    )
    # Both SQLite (3.35+) and PostgreSQL drop an unindexed column in place.
    op.execute("ALTER TABLE executions DROP COLUMN input")


def downgrade() -> None:
    op.add_column("executions", sa.Column("input", _JSON, nullable=True))
    op.execute(
        "UPDATE executions SET input = (SELECT input FROM execution_inputs"
        " WHERE execution_inputs.execution_id = executions.id)"
    )
    op.drop_table("execution_inputs")
