"""The one migration history produces exactly the declared schema, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from conveyor.store import Database
from conveyor.store.tables import metadata


def test_migrations_produce_the_declared_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.read() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
            tables = set(inspect(conn).get_table_names())
    finally:
        db.dispose()
    assert differences == []
    assert tables == set(metadata.tables) | {"alembic_version"}


def test_migrate_is_idempotent(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        db.migrate()
        with db.read() as conn:
            assert "executions" in inspect(conn).get_table_names()
    finally:
        db.dispose()
