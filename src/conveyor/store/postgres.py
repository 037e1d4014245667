"""PostgreSQL specifics: psycopg 3, SKIP LOCKED, advisory locks, LISTEN/NOTIFY, the clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Engine,
    Integer,
    Text,
    bindparam,
    cast,
    create_engine,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import URL
from sqlalchemy.sql.elements import ColumnClause, ColumnElement
from sqlalchemy.sql.selectable import FromClause

from conveyor.store.prepared import Call, prepared
from conveyor.store.tables import UTCDateTime

log = logging.getLogger(__name__)


_NOTIFY_BYTES = 7000
_UNITS = {"minute": "minute", "hour": "hour", "day": "day"}
_EVENT_WRITERS = text(
    "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'relation'"
    " AND mode = 'RowExclusiveLock' AND relation = to_regclass('events')"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND pid IS DISTINCT FROM pg_backend_pid()"
)
_RUNNING = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'virtualxid'"
    " AND virtualxid = ANY(CAST(:w AS text[])))"
)


class PostgresDialect:
    name = "postgresql"
    supports_skip_locked = True
    # Ids come from a sequence when a row is inserted, and transactions commit in any order:
    # a lower id can become visible after a higher one (see conveyor.live).
    ids_commit_in_order = False

    def normalize(self, url: URL) -> URL:
        return url.set(drivername="postgresql+psycopg")

    def create_engine(self, url: URL, *, json_serializer: Any, json_deserializer: Any) -> Engine:
        return create_engine(
            url,
            json_serializer=json_serializer,
            json_deserializer=json_deserializer,
            pool_size=10,
            max_overflow=20,
            connect_args={
                "connect_timeout": 5,
                "application_name": "conveyor",
                # JIT compiles any statement the planner guesses is costly, which adds tens to
                # hundreds of milliseconds to queries that run in a few (a bounded search, a
                # statistics aggregate); it pays only for long analytical queries.
                "options": "-c jit=off",
            },
        )

    def now(self) -> ColumnElement[Any]:
        return func.clock_timestamp(type_=UTCDateTime())

    def now_plus(self, seconds: float) -> ColumnElement[Any]:
        interval = func.make_interval(0, 0, 0, 0, 0, 0, float(seconds))
        return func.clock_timestamp(type_=UTCDateTime()) + interval

    def now_plus_seconds(self, seconds: ColumnElement[Any]) -> ColumnElement[Any]:
        """The database clock plus a number of seconds given by a SQL expression."""
        interval = func.make_interval(0, 0, 0, 0, 0, 0, seconds)
        return func.clock_timestamp(type_=UTCDateTime()) + interval

    def json_rows(self, *columns: ColumnClause[Any]) -> FromClause:
        """Rows ``v`` read from one bound parameter ``rows``, a JSON array of objects: how a
        batch of any size is written by one statement, compiled once."""
        rows = (
            func.jsonb_to_recordset(cast(bindparam("rows", type_=Text()), JSONB()))
            .table_valued(*columns)
            .render_derived(name="rows", with_types=True)
        )
        # LIMIT n (the array's length) tells the planner how few rows come, so a small
        # batch joins its target table through the primary key instead of scanning it.
        return select(rows).limit(bindparam("n", type_=Integer())).subquery("v")

    def json_value(self, text_column: ColumnElement[Any]) -> ColumnElement[Any]:
        """A JSON document given as text, as stored in a JSON column (jsonb here)."""
        return cast(text_column, JSONB())

    def time_value(self, value: datetime | None) -> Any:
        """A timestamp as ``json_rows`` takes it (orjson writes ISO 8601 with the offset)."""
        return value

    def json_bytes(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """The size in bytes of a JSON column as text (jsonb's text form)."""
        return func.octet_length(cast(column, Text()))

    def time_bucket(self, column: ColumnElement[Any], unit: str) -> ColumnElement[Any]:
        """A timestamp truncated to its minute, hour or day in UTC (whatever the session's
        time zone)."""
        # Literals, not parameters: the expression is grouped by, and must read the same.
        zone: ColumnElement[str] = literal_column("'UTC'")
        part: ColumnElement[str] = literal_column(f"'{_UNITS[unit]}'")
        truncated = func.date_trunc(part, func.timezone(zone, column))
        return func.timezone(zone, truncated, type_=UTCDateTime())

    def duration_ms(self, start: ColumnElement[Any], end: ColumnElement[Any]) -> Any:
        """Milliseconds from ``start`` to ``end`` (NULL unless both are set)."""
        return func.extract("epoch", end - start) * 1000

    def sample_every(self, n: int) -> ColumnElement[bool]:
        """About one execution in ``n``, by a hash of its id."""
        return func.abs(func.hashtext(literal_column("executions.id"))) % n == 0

    def percentiles(
        self, value: ColumnElement[Any], fractions: tuple[float, ...]
    ) -> list[ColumnElement[Any]]:
        """Aggregates of ``value`` at each fraction, interpolated (NULLs ignored)."""
        return [
            func.percentile_cont(fraction).within_group(value).label(f"p{round(fraction * 100)}")
            for fraction in fractions
        ]

    def notify(self, conn: Any, channel: str, payload: str) -> None:
        """Delivered to listeners when the transaction commits."""
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})

    def notify_calls(self, conn: Any, channel: str, payloads: list[str]) -> list[Call]:
        """Statements that notify ``payloads`` (space-separated, as few notifications as fit
        PostgreSQL's 8000 bytes), for :func:`conveyor.store.prepared.run_together`."""
        statement = prepared(
            conn, "postgres.notify", lambda: select(func.pg_notify(bindparam("c"), bindparam("p")))
        )
        chunks: list[list[str]] = [[]]
        size = 0
        for payload in payloads:
            if chunks[-1] and size + len(payload) + 1 > _NOTIFY_BYTES:
                chunks.append([])
                size = 0
            chunks[-1].append(payload)
            size += len(payload) + 1
        return [(statement, {"c": channel, "p": " ".join(c)}) for c in chunks if c]

    def listener(
        self, url: URL, channel: str, on_message: Callable[[str], None]
    ) -> Coroutine[Any, Any, None] | None:
        return listen(url, channel, on_message)

    def after_commit(self, url: URL, info: dict[str, Any]) -> None:
        """Nothing to do: PostgreSQL delivers NOTIFY at commit."""

    def watch_changes(
        self, url: URL, on_change: Callable[[str], None], channel: str = ""
    ) -> Coroutine[Any, Any, None] | None:
        """Not needed: NOTIFY says what changed."""
        return None

    def event_writers(self, conn: Any) -> frozenset[str]:
        """The transactions (virtual ids) that may still commit an events row: those
        holding the lock an INSERT takes on the table before it draws an id. Run after
        the read whose missing ids they may hold."""
        rows = conn.execute(_EVENT_WRITERS).scalars()
        return frozenset(str(r) for r in rows)

    def writers_running(self, conn: Any, writers: frozenset[str]) -> bool:
        """Whether any of ``writers`` (from :meth:`event_writers`) is still open: each
        transaction holds the lock on its own virtual id until it ends."""
        if not writers:
            return False
        return bool(conn.execute(_RUNNING, {"w": sorted(writers)}).scalar())

    def lock_keys(self, conn: Any, keys: list[str]) -> None:
        """Transaction-scoped advisory locks, taken in sorted order so claimers never
        deadlock."""
        for key in keys:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})

    def index_hint(self, index: str) -> str:
        """No hints: PostgreSQL's planner picks a small partial index by itself."""
        return ""

    def lock_suffix(self) -> str:
        return " FOR UPDATE SKIP LOCKED"

    def database_exists_hint(self, url: URL) -> str:
        return (
            f"check that PostgreSQL runs at {url.host}:{url.port or 5432} and the database exists"
        )


async def listen(url: URL, channel: str, on_message: Callable[[str], None]) -> None:
    """Deliver every NOTIFY on ``channel`` to ``on_message`` until cancelled; reconnects
    with backoff when the connection drops (polling covers the gap)."""
    # Imported here so that a worker on SQLite never loads psycopg (about 24 MB); on
    # PostgreSQL SQLAlchemy has already loaded it for the engine.
    import psycopg
    from psycopg import sql

    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    delay = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=5
            ) as conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                delay = 0.5
                on_message("listening")
                async for note in conn.notifies():
                    on_message(note.payload)
        except psycopg.Error as exc:
            on_message("not-listening")
            log.warning(
                "notification listener lost its connection: %s",
                exc,
                extra={"action": "listen_reconnect"},
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
