"""SQLite specifics: WAL, busy timeout, BEGIN IMMEDIATE for writes, the clock as SQL."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Engine,
    Text,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.sql.elements import ColumnClause, ColumnElement
from sqlalchemy.sql.selectable import FromClause

from conveyor.store.tables import SQLITE_TIME_FORMAT, UTCDateTime

WRITE_OPTION = "conveyor_write"
BUSY_TIMEOUT_MS = 30_000
_NOW_FORMAT = "%Y-%m-%d %H:%M:%f000"


class SQLiteDialect:
    name = "sqlite"
    supports_skip_locked = False

    def normalize(self, url: URL) -> URL:
        return url.set(drivername="sqlite+pysqlite")

    def create_engine(self, url: URL, *, json_serializer: Any, json_deserializer: Any) -> Engine:
        engine = create_engine(
            url,
            json_serializer=json_serializer,
            json_deserializer=json_deserializer,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _on_connect)
        event.listen(engine, "begin", _on_begin)
        return engine

    def now(self) -> ColumnElement[Any]:
        return func.strftime(_NOW_FORMAT, "now", type_=UTCDateTime())

    def now_plus(self, seconds: float) -> ColumnElement[Any]:
        return func.strftime(_NOW_FORMAT, "now", f"{seconds:+.3f} seconds", type_=UTCDateTime())

    def now_plus_seconds(self, seconds: ColumnElement[Any]) -> ColumnElement[Any]:
        """The database clock plus a number of seconds given by a SQL expression."""
        modifier = literal("+").concat(cast(seconds, Text())).concat(" seconds")
        return func.strftime(_NOW_FORMAT, "now", modifier, type_=UTCDateTime())

    def json_rows(self, *columns: ColumnClause[Any]) -> FromClause:
        """Rows ``v`` read from one bound parameter ``rows``, a JSON array of objects: how a
        batch of any size is written by one statement, compiled once."""
        each = func.json_each(bindparam("rows", type_=Text())).table_valued("value")
        return (
            select(
                *(
                    func.json_extract(
                        each.c.value, literal_column(f"'$.{c.name}'"), type_=c.type
                    ).label(c.name)
                    for c in columns
                )
            )
            .select_from(each)
            .subquery("v")
        )

    def json_value(self, text_column: ColumnElement[Any]) -> ColumnElement[Any]:
        """A JSON document given as text, as stored in a JSON column (text on SQLite)."""
        return text_column

    def time_value(self, value: datetime | None) -> Any:
        """A timestamp as ``json_rows`` takes it."""
        return None if value is None else value.astimezone(UTC).strftime(SQLITE_TIME_FORMAT)

    def notify(self, conn: Any, channel: str, payload: str) -> None:
        """SQLite has no notification bus; workers poll (and in-process wake-ups)."""

    def notify_many(self, conn: Any, channel: str, payloads: list[str]) -> None:
        """See :meth:`notify`."""

    def listener(
        self, url: URL, channel: str, on_message: Callable[[str], None]
    ) -> Coroutine[Any, Any, None] | None:
        """No notification bus: other processes are noticed by polling."""
        return None

    def lock_keys(self, conn: Any, keys: list[str]) -> None:
        """Nothing to do: BEGIN IMMEDIATE already serializes every claimer."""

    def lock_suffix(self) -> str:
        return ""

    def database_exists_hint(self, url: URL) -> str:
        return f"check that the folder of {url.database} exists and is writable"


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from pysqlite so BEGIN is emitted by _on_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _on_begin(conn: Any) -> None:
    # Writers take the write lock up front so two writers never deadlock on lock upgrade.
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def sqlite_url(path: str) -> URL:
    return make_url(f"sqlite:///{path}")
