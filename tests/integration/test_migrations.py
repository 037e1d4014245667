"""The one migration history produces exactly the declared schema, on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

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


def test_hot_tables_leave_room_for_heap_only_updates_on_postgresql(database_url: str) -> None:
    db = Database(database_url)
    try:
        if db.name != "postgresql":
            pytest.skip("storage parameters exist on PostgreSQL only")
        with db.read() as conn:
            options = dict(
                conn.execute(
                    text(
                        "SELECT relname, reloptions FROM pg_class "
                        "WHERE relname IN ('executions', 'steps')"
                    )
                ).all()
            )
    finally:
        db.dispose()
    assert options == {"executions": ["fillfactor=70"], "steps": ["fillfactor=80"]}
