"""One SQL statement against PostgreSQL (psycopg, async), MySQL/MariaDB (PyMySQL, in a
thread) or SQLite (stdlib, in a thread), each driver's errors sorted into retryable or not.

Values always travel as driver parameters, never inside the SQL text. Each driver bounds the
statement on the server where it can (PostgreSQL ``statement_timeout``, MariaDB
``max_statement_time``, MySQL ``max_execution_time``, SQLite a progress handler) and runs a
read in a read-only transaction (SQLite: a read-only connection). The network drivers
connect to ``address``, which database.py got from ``outbound.resolve`` (checked), never to
the host name.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from conveyor.errors import NodeError

if TYPE_CHECKING:
    import pymysql

Params = list[Any] | dict[str, Any] | None
# Conveyor's own tables: a SQLite file holding all of them is a Conveyor database (the
# one this worker uses, or another's), which a workflow may not read or write.
CONVEYOR_TABLES = frozenset({"alembic_version", "workspaces", "executions", "steps"})


@dataclass(frozen=True)
class Target:
    """Where a credential's URL points. ``kind``: postgresql, mysql or sqlite."""

    kind: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""
    path: str = ""
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Query:
    sql: str
    params: Params
    read_only: bool
    max_rows: int
    timeout: float


@dataclass
class Rows:
    """What a statement returned: at most ``max_rows`` rows (``truncated`` when there were
    more) and the driver's count of affected rows (None when it has none)."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool
    affected: int | None


def _fail(label: str, exc: BaseException, target: Target, *, retryable: bool) -> NodeError:
    """The driver's message, prefixed, with the password taken out should it appear."""
    message = str(exc).strip() or type(exc).__name__
    if target.password:
        message = message.replace(target.password, "***")
    return NodeError(f"{label}: {message}", non_retryable=not retryable)


def _take(cursor: Any, max_rows: int) -> tuple[list[tuple[Any, ...]], bool]:
    fetched = list(cursor.fetchmany(max_rows + 1))
    return [tuple(row) for row in fetched[:max_rows]], len(fetched) > max_rows


def _affected(count: int | None) -> int | None:
    return count if count is not None and count >= 0 else None


# --- PostgreSQL -------------------------------------------------------------------------

# SQLSTATE classes a second attempt cannot fix: authorization (28), unknown database (3D),
# syntax or access rule (42), data (22), integrity (23), transaction state (25: a write in
# a read-only transaction), unsupported feature (0A).
_PG_PERMANENT = ("28", "3D", "42", "22", "23", "25", "0A", "2B", "44")
_PG_OPTIONS = ("sslmode", "application_name")
# Whether one schema holds all of Conveyor's tables (whatever the search_path).
_PG_CONVEYOR = (
    "SELECT schemaname FROM pg_catalog.pg_tables WHERE tablename = ANY(%s) "
    "GROUP BY schemaname HAVING count(*) = %s"
)


async def run_postgres(target: Target, address: str, query: Query) -> Rows:
    import psycopg
    from psycopg.conninfo import make_conninfo

    timeout_ms = max(1, math.ceil(query.timeout * 1000))
    options = {k: v for k, v in target.options.items() if k in _PG_OPTIONS}
    conninfo = make_conninfo(
        host=target.host,
        hostaddr=address,
        port=target.port or 5432,
        user=target.user or None,
        dbname=target.database or None,
        connect_timeout=max(2, math.ceil(min(query.timeout, 30))),
        options=f"-c statement_timeout={timeout_ms}",
        **options,
        **_no_worker_identity(target),
    )
    try:
        conn = await psycopg.AsyncConnection.connect(conninfo)
    except psycopg.Error as exc:
        raise _postgres_error(exc, target) from None
    try:
        async with conn:
            await conn.set_read_only(query.read_only)
            cursor = conn.cursor()
            await _refuse_conveyor_pg(cursor, target)
            # Prepared: exactly one statement (a second, after a COMMIT, could escape the
            # read-only transaction), and the SQL is parsed for placeholders only when there
            # are params.
            await cursor.execute(query.sql, query.params, prepare=True)
            columns = [c.name for c in cursor.description or ()]
            fetched = await cursor.fetchmany(query.max_rows + 1) if columns else []
            rows = [tuple(row) for row in fetched[: query.max_rows]]
            truncated = len(fetched) > query.max_rows
            affected = _affected(cursor.rowcount)
            if query.read_only:
                await conn.rollback()
            else:
                await conn.commit()
            return Rows(columns, rows, truncated, affected)
    except psycopg.Error as exc:
        raise _postgres_error(exc, target) from None


async def _refuse_conveyor_pg(cursor: Any, target: Target) -> None:
    await cursor.execute(_PG_CONVEYOR, (sorted(CONVEYOR_TABLES), len(CONVEYOR_TABLES)))
    if await cursor.fetchone():
        raise NodeError(
            f"PostgreSQL: database '{target.database}' is a Conveyor database; db.query may "
            "not read or write Conveyor's own data",
            non_retryable=True,
        )


def _no_worker_identity(target: Target) -> dict[str, str]:
    """What keeps libpq from lending the worker's own identity to a credential that lacks
    one: its PGPASSWORD (an explicit password, even empty, wins over the environment), its
    ~/.pgpass, its client certificate, its Kerberos ticket."""
    settings = {
        "password": target.password,
        "passfile": os.path.join(os.devnull, "none"),  # a path that cannot exist
        "gssencmode": "disable",
    }
    if _libpq_version() >= 160000:
        settings["sslcertmode"] = "disable"
        settings["require_auth"] = "password,md5,scram-sha-256,none"
    return settings


def _libpq_version() -> int:
    import psycopg

    return int(psycopg.pq.version())


def _postgres_error(exc: Exception, target: Target) -> NodeError:
    import psycopg

    state = getattr(exc, "sqlstate", None) or ""
    permanent = state.startswith(_PG_PERMANENT) or isinstance(
        exc, psycopg.ProgrammingError | psycopg.DataError | psycopg.IntegrityError
    )
    if not state and isinstance(exc, psycopg.OperationalError):
        # A failed connection carries no SQLSTATE; libpq's text tells authentication and a
        # missing database (the user must fix them) from a network failure (it may pass).
        text = str(exc)
        permanent = any(
            marker in text
            for marker in (
                "authentication failed",
                "does not exist",
                "no password supplied",
                "requirement failed",  # require_auth refused the server's method
            )
        )
    if state == "25006":
        exc = RuntimeError(f"{exc} (the query runs with mode 'read'; use mode 'write')")
    return _fail("PostgreSQL", exc, target, retryable=not permanent)


# --- MySQL and MariaDB ------------------------------------------------------------------

# Error codes a second attempt cannot fix: access denied (1044, 1045, 1142, 1143, 1227,
# 1698), unknown database (1049), a write in a read-only transaction (1792).
_MYSQL_PERMANENT = frozenset({1044, 1045, 1049, 1142, 1143, 1227, 1698, 1792})


async def run_mysql(target: Target, address: str, query: Query) -> Rows:
    holder: dict[str, pymysql.connections.Connection[Any]] = {}
    work = asyncio.to_thread(_mysql_query, target, address, query, holder)
    try:
        return await work
    except asyncio.CancelledError:
        # The thread cannot be stopped; the server can: KILL QUERY from a second
        # connection (what the mysql client does on Ctrl-C), so the statement ends now.
        conn = holder.get("conn")
        if conn is not None:
            thread_id = int(conn.thread_id())  # type: ignore[no-untyped-call]
            kill = threading.Thread(target=_mysql_kill, args=(target, address, thread_id))
            kill.daemon = True
            kill.start()
        raise


def _mysql_connect(
    target: Target, address: str, timeout: float
) -> pymysql.connections.Connection[Any]:
    import pymysql

    return pymysql.connect(
        host=address,
        port=target.port or 3306,
        user=target.user or None,
        password=target.password,
        database=target.database or None,
        connect_timeout=max(1.0, min(timeout, 30.0)),
        # A client-side bound too, should the server not enforce the statement timeout.
        read_timeout=math.ceil(timeout) + 5,
        write_timeout=math.ceil(timeout) + 5,
        charset="utf8mb4",
        autocommit=False,
        local_infile=False,  # LOAD DATA LOCAL would read files on the worker
    )


def _mysql_query(
    target: Target,
    address: str,
    query: Query,
    holder: dict[str, pymysql.connections.Connection[Any]],
) -> Rows:
    import pymysql

    try:
        conn = _mysql_connect(target, address, query.timeout)
    except pymysql.Error as exc:
        raise _mysql_error(exc, target) from None
    holder["conn"] = conn
    try:
        with conn, conn.cursor() as cursor:
            server = str(conn.get_server_info())  # type: ignore[no-untyped-call]
            if "mariadb" in server.lower():
                cursor.execute("SET SESSION max_statement_time = %s", (query.timeout,))
            else:
                timeout_ms = max(1, math.ceil(query.timeout * 1000))
                cursor.execute("SET SESSION max_execution_time = %s", (timeout_ms,))
            # Session-wide, not START TRANSACTION READ ONLY: DDL commits the transaction it
            # is in and would escape that; a read-only session refuses it.
            access = "READ ONLY" if query.read_only else "READ WRITE"
            cursor.execute(f"SET SESSION TRANSACTION {access}")
            cursor.execute("START TRANSACTION")
            affected = cursor.execute(query.sql, query.params)
            columns = [str(c[0]) for c in cursor.description or ()]
            rows, truncated = _take(cursor, query.max_rows) if columns else ([], False)
            if query.read_only:
                conn.rollback()
            else:
                conn.commit()
            return Rows(columns, rows, truncated, _affected(affected))
    except pymysql.Error as exc:
        raise _mysql_error(exc, target) from None


def _mysql_kill(target: Target, address: str, thread_id: int) -> None:
    import pymysql

    try:
        with _mysql_connect(target, address, 5) as conn, conn.cursor() as cursor:
            cursor.execute("KILL QUERY %s", (thread_id,))
    except pymysql.Error:
        pass  # best effort: the statement timeout ends it anyway


def _mysql_error(exc: Exception, target: Target) -> NodeError:
    import pymysql

    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    permanent = code in _MYSQL_PERMANENT or isinstance(
        exc,
        pymysql.ProgrammingError
        | pymysql.DataError
        | pymysql.IntegrityError
        | pymysql.NotSupportedError,
    )
    text = str(exc.args[1]) if code and len(exc.args) > 1 else str(exc)
    if code == 1792:
        text += " (the query runs with mode 'read'; use mode 'write')"
    return _fail(
        "MySQL",
        RuntimeError(f"{text} (error {code})" if code else text),
        target,
        retryable=not permanent,
    )


# --- SQLite -----------------------------------------------------------------------------

# Result codes that may pass: busy or locked by another writer, interrupted by the
# statement timeout, an I/O error.
_SQLITE_TRANSIENT = frozenset({5, 6, 9, 10})


async def run_sqlite(target: Target, query: Query) -> Rows:
    holder: dict[str, sqlite3.Connection] = {}
    try:
        return await asyncio.to_thread(_sqlite_query, target, query, holder)
    except asyncio.CancelledError:
        conn = holder.get("conn")
        if conn is not None:
            conn.interrupt()  # thread-safe: the running statement stops at its next step
        raise


def _sqlite_query(target: Target, query: Query, holder: dict[str, sqlite3.Connection]) -> Rows:
    mode = "ro" if query.read_only else "rw"  # never creates a file
    uri = f"file:{quote(target.path)}?mode={mode}"
    try:
        conn = sqlite3.connect(
            uri, uri=True, timeout=query.timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise _sqlite_error(exc, target, query) from None
    holder["conn"] = conn
    # No other file: ATTACH (and VACUUM INTO, which attaches its target) could read or
    # create any file the worker can reach, the Conveyor database among them.
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    try:
        _refuse_conveyor(conn, target)
        deadline = time.monotonic() + query.timeout
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        if query.read_only:
            conn.execute("PRAGMA query_only = ON")
        conn.execute("BEGIN" if query.read_only else "BEGIN IMMEDIATE")
        cursor = conn.execute(query.sql, query.params if query.params is not None else ())
        columns = [str(c[0]) for c in cursor.description or ()]
        rows, truncated = _take(cursor, query.max_rows) if columns else ([], False)
        affected = _affected(cursor.rowcount)
        conn.execute("ROLLBACK" if query.read_only else "COMMIT")
        return Rows(columns, rows, truncated, affected)
    except sqlite3.Error as exc:
        raise _sqlite_error(exc, target, query) from None
    finally:
        conn.close()


def _refuse_conveyor(conn: sqlite3.Connection, target: Target) -> None:
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if names >= CONVEYOR_TABLES:
        raise NodeError(
            f"SQLite: {target.path} is a Conveyor database; db.query may not read or write "
            "Conveyor's own data",
            non_retryable=True,
        )


def _sqlite_error(exc: sqlite3.Error, target: Target, query: Query) -> NodeError:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == 9:
        exc = sqlite3.OperationalError(f"{exc} (statement timeout)")
    elif code == 14:
        exc = sqlite3.OperationalError(f"{exc}: {target.path} (a file on the worker's machine)")
    elif code == 8 and query.read_only:
        exc = sqlite3.OperationalError(f"{exc} (the query runs with mode 'read'; use mode 'write')")
    return _fail("SQLite", exc, target, retryable=code in _SQLITE_TRANSIENT)
