"""The one migration history produces exactly the declared schema, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from conveyor.store import Database
from conveyor.store.database import MIGRATIONS
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


def test_0005_moves_every_input_out_of_the_executions_row(tmp_path: Path) -> None:
    """On SQLite (a fresh database at 0003); the statements of 0005 are the same on both."""
    from alembic import command
    from alembic.config import Config

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with db.write() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
            t = "2025-01-01 00:00:00.000000"
            for statement in (
                f"INSERT INTO workspaces (id, name, created_at) VALUES ('w', 'w', '{t}')",
                "INSERT INTO workflows (id, workspace_id, name, status, latest_version, "
                f"created_at, updated_at) VALUES ('f', 'w', 'f', 'active', 1, '{t}', '{t}')",
                "INSERT INTO workflow_versions (id, workflow_id, version, definition, digest, "
                f"created_at) VALUES ('v', 'f', 1, '{{}}', 'd', '{t}')",
            ):
                conn.exec_driver_sql(statement)
            for n in (1, 2):
                conn.execute(
                    text(
                        "INSERT INTO executions (id, workspace_id, workflow_id, version_id, "
                        "status, trigger_type, input, available_at, created_at) VALUES "
                        "(:id, 'w', 'f', 'v', 'queued', 'manual', :input, :t, :t)"
                    ),
                    {"id": f"e{n}", "input": f'{{"n": {n}}}', "t": t},
                )
        db.migrate()
        with db.read() as conn:
            moved = conn.execute(text("SELECT execution_id, input FROM execution_inputs")).all()
            columns = {c["name"] for c in inspect(conn).get_columns("executions")}
    finally:
        db.dispose()
    assert sorted(moved) == [("e1", '{"n": 1}'), ("e2", '{"n": 2}')]
    assert "input" not in columns


def test_the_audit_log_refuses_updates_and_deletes(database_url: str) -> None:
    """Append-only by trigger (0012) on both dialects: not even raw SQL rewrites history."""
    from datetime import UTC, datetime

    from sqlalchemy.exc import DBAPIError

    from conveyor.store import audit

    db = Database(database_url)
    entry = audit.Entry(
        None, audit.Actor("someone@example.com"), "signin.failed", audit.Source("api")
    )
    refused: list[str] = []
    try:
        with db.write() as conn:
            row_id = audit.record(conn, entry, datetime.now(UTC))
        statements = [
            f"UPDATE audit_log SET action = 'signin.succeeded' WHERE id = {row_id}",
            f"DELETE FROM audit_log WHERE id = {row_id}",
            "DELETE FROM audit_log",
        ]
        if db.name == "postgresql":
            statements.append("TRUNCATE audit_log")
        for statement in statements:
            with pytest.raises(DBAPIError) as caught, db.write() as conn:
                conn.exec_driver_sql(statement)
            refused.append(statement)
            assert "audit_log is append-only" in str(caught.value)
        with db.read() as conn:
            rows = conn.execute(text("SELECT action FROM audit_log")).scalars().all()
    finally:
        db.dispose()
    assert rows == ["signin.failed"]
    assert len(refused) == len(statements)
