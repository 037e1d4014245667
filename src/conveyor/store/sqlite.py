"""SQLite specifics: WAL, busy timeout, BEGIN IMMEDIATE for writes, the clock as SQL, and
wake-up files in place of NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    LargeBinary,
    Text,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    literal,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.sql.elements import ColumnClause, ColumnElement
from sqlalchemy.sql.selectable import FromClause

from conveyor.errors import InputError, StoreUnavailable
from conveyor.store.channels import EVENTS_CHANNEL, FINISHED_CHANNEL, WAKE_CHANNEL
from conveyor.store.prepared import Call
from conveyor.store.tables import SQLITE_TIME_FORMAT, UTCDateTime

WRITE_OPTION = "conveyor_write"
BUSY_TIMEOUT_MS = 30_000
_BEGIN_WAIT_MS = 1  # per attempt at BEGIN IMMEDIATE (see _begin_immediate)
_NOW_FORMAT = "%Y-%m-%d %H:%M:%f000"
_BUCKET_PREFIX = {"minute": 16, "hour": 13, "day": 10}  # of "YYYY-MM-DD HH:MM:SS.ffffff"


class SQLiteDialect:
    name = "sqlite"
    supports_skip_locked = False
    # One writer at a time, and a row's id is taken inside its write transaction: commits
    # become visible in id order, so an id missing below a visible one never comes later.
    ids_commit_in_order = True

    def normalize(self, url: URL) -> URL:
        return url.set(drivername="sqlite+pysqlite")

    def create_engine(self, url: URL, *, json_serializer: Any, json_deserializer: Any) -> Engine:
        busy_ms = busy_timeout_ms(url)
        engine = create_engine(
            url,
            json_serializer=json_serializer,
            json_deserializer=json_deserializer,
            connect_args={"timeout": busy_ms / 1000, "check_same_thread": False},
        )

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            _on_connect(dbapi_connection, busy_ms)

        def on_begin(conn: Any) -> None:
            _on_begin(conn, busy_ms)

        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", on_begin)
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

    def json_bytes(self, column: ColumnElement[Any]) -> ColumnElement[Any]:
        """The size in bytes of a JSON column's stored text."""
        return func.length(cast(column, LargeBinary()))

    def time_bucket(self, column: ColumnElement[Any], unit: str) -> ColumnElement[Any]:
        """A timestamp truncated to its minute, hour or day (UTC): a prefix of the stored
        fixed-width text, completed to the stored format."""
        keep = _BUCKET_PREFIX[unit]
        rest = "0000-01-01 00:00:00.000000"[keep:]
        # Literals, not parameters: the expression is grouped by, and must read the same.
        prefix = func.substr(column, 1, literal_column(str(keep)))
        return type_coerce(prefix.concat(literal_column(f"'{rest}'")), UTCDateTime())

    def duration_ms(self, start: ColumnElement[Any], end: ColumnElement[Any]) -> Any:
        """Milliseconds from ``start`` to ``end`` (NULL unless both are set)."""
        return (func.julianday(end) - func.julianday(start)) * 86_400_000.0

    def sample_every(self, n: int) -> ColumnElement[bool]:
        """One execution in ``n``, by rowid (creation order): decided on the index entry,
        before the row is read."""
        return literal_column("executions.rowid") % n == 0

    def percentiles(self, value: ColumnElement[Any], fractions: tuple[float, ...]) -> None:
        """No percentile aggregate in SQLite: callers compute them from a bounded sample."""
        return None

    def notify(self, conn: Any, channel: str, payload: str) -> None:
        """No notification bus: once the transaction has committed (see :meth:`after_commit`)
        it touches the channel's file, ``<database>-wake`` for workers and
        ``<database>-events`` for live feeds, which watching processes notice at once. The
        payload is not carried (receivers look at the database themselves), except on
        ``<database>-finished``, which holds the last finishing commit's payloads."""
        if channel in _FILES:
            conn.info.setdefault(_pending(channel), []).append(payload)

    def notify_calls(self, conn: Any, channel: str, payloads: list[str]) -> list[Call]:
        """See :meth:`notify`: nothing to run in the transaction."""
        for payload in payloads:
            self.notify(conn, channel, payload)
        return []

    def after_commit(self, url: URL, info: dict[str, Any]) -> None:
        """Announce what the committed transaction notified (its ``conn.info``): one touch
        of each channel's file however many rows the transaction wrote."""
        if not url.database or url.database == ":memory:":
            return
        for channel in _FILES:
            payloads = info.pop(_pending(channel), None)
            if payloads:
                with contextlib.suppress(OSError):
                    path = _signal_file(Path(url.database), channel)
                    if channel in _CARRIED:
                        _replace(path, " ".join(payloads))
                    else:
                        path.touch()

    def listener(
        self, url: URL, channel: str, on_message: Callable[[str], None]
    ) -> Coroutine[Any, Any, None] | None:
        """No notification bus: see :meth:`watch_changes`."""
        return None

    def watch_changes(
        self, url: URL, on_change: Callable[[str], None], channel: str = WAKE_CHANNEL
    ) -> Coroutine[Any, Any, None] | None:
        """Wake-ups from other processes: ``changed`` whenever one touches the channel's
        file after committing (inotify on Linux, so an idle watcher costs nothing; a 2 ms
        ``stat`` poll elsewhere). The receiver then looks at the database itself."""
        if not url.database or url.database == ":memory:" or channel not in _FILES:
            return None
        path = _signal_file(Path(url.database).resolve(), channel)
        return _watch(path, on_change, carried=channel in _CARRIED)

    def event_writers(self, conn: Any) -> frozenset[str]:
        """Nothing to wait for: commits are visible in id order (``ids_commit_in_order``)."""
        return frozenset()

    def writers_running(self, conn: Any, writers: frozenset[str]) -> bool:
        return False

    def lock_keys(self, conn: Any, keys: list[str]) -> None:
        """Nothing to do: BEGIN IMMEDIATE already serializes every claimer."""

    def index_hint(self, index: str) -> str:
        """Text after a table name in FROM that makes the planner use ``index``: SQLite
        without statistics would rather walk a bigger index."""
        return f"INDEXED BY {index}"

    def lock_suffix(self) -> str:
        return ""

    def database_exists_hint(self, url: URL) -> str:
        return f"check that the folder of {url.database} exists and is writable"


def busy_timeout_ms(url: URL) -> int:
    """How long a write waits for another process's write lock before it fails: the URL's
    ``timeout`` (seconds, as pysqlite takes it: ``sqlite:///conveyor.db?timeout=5``), else
    BUSY_TIMEOUT_MS."""
    raw = url.query.get("timeout")
    value = raw[-1] if isinstance(raw, tuple) else raw
    if value is None:
        return BUSY_TIMEOUT_MS
    try:
        seconds = float(value)
    except ValueError:
        raise InputError(f"timeout={value!r} in the database URL is not a number") from None
    if not 0 <= seconds <= 3600:
        raise InputError(f"timeout={value} in the database URL: give 0 to 3600 seconds")
    return int(seconds * 1000)


def _on_connect(dbapi_connection: Any, busy_ms: int) -> None:
    # Take transaction control from pysqlite so BEGIN is emitted by _on_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _on_begin(conn: Any, busy_ms: int) -> None:
    # Writers take the write lock up front so two writers never deadlock on lock upgrade.
    if conn.get_execution_options().get(WRITE_OPTION):
        _begin_immediate(conn.connection.dbapi_connection, busy_ms)
    else:
        conn.exec_driver_sql("BEGIN")


def _begin_immediate(raw: Any, busy_ms: int) -> None:
    """``BEGIN IMMEDIATE``, waiting for another process's write lock in steps of about a
    millisecond. SQLite's own busy handler backs off to sleeps of 10-100 ms, so a lock
    freed after a fraction of a millisecond is often taken up only many milliseconds
    later; with writers in several processes that sleep, not the work, set the pace."""
    raw.execute(f"PRAGMA busy_timeout={_BEGIN_WAIT_MS}")
    deadline = time.monotonic() + busy_ms / 1000
    try:
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    # Raised from an engine event, which SQLAlchemy does not wrap: say
                    # here what it means (the API answers 503 with Retry-After).
                    raise StoreUnavailable(
                        "the database is busy: another process has held its write lock "
                        f"for over {busy_ms / 1000:g} s; retry shortly"
                    ) from exc
    finally:
        raw.execute(f"PRAGMA busy_timeout={busy_ms}")


def sqlite_url(path: str) -> URL:
    return make_url(f"sqlite:///{path}")


# channel: file suffix
_FILES = {WAKE_CHANNEL: "wake", EVENTS_CHANNEL: "events", FINISHED_CHANNEL: "finished"}
# Channels whose file holds the payloads of the last commit that notified (replaced whole,
# atomically): a watcher learns them without a read, unless another commit replaced them
# first, so it still says ``changed`` after them.
_CARRIED = frozenset({FINISHED_CHANNEL})
_IN_MODIFY, _IN_ATTRIB, _IN_CREATE, _IN_MOVED_TO = 0x2, 0x4, 0x100, 0x80
_POLL_SECONDS = 0.002


def _pending(channel: str) -> str:
    return f"conveyor.touch.{channel}"


def _signal_file(database: Path, channel: str) -> Path:
    return database.with_name(f"{database.name}-{_FILES[channel]}")


def _wake_file(database: Path) -> Path:
    return _signal_file(database, WAKE_CHANNEL)


def _replace(path: Path, text: str) -> None:
    """Write ``path`` whole, atomically (readers see the old text or the new one)."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
    temporary.write_text(text)
    os.replace(temporary, path)


async def _watch(path: Path, on_change: Callable[[str], None], carried: bool = False) -> None:
    watched = _inotify(path.parent)
    if watched is None:
        await _poll(path, on_change)
        return
    loop = asyncio.get_running_loop()
    name = path.name.encode()

    def readable() -> None:
        try:
            data = os.read(watched, 65536)
        except BlockingIOError:
            return
        offset = 0
        changed = False
        while offset + 16 <= len(data):
            size = struct.unpack_from("iIII", data, offset)[3]
            changed = changed or data[offset + 16 : offset + 16 + size].rstrip(b"\0") == name
            offset += 16 + size
        if changed:
            if carried:
                with contextlib.suppress(OSError):
                    on_change(path.read_text())
            on_change("changed")

    loop.add_reader(watched, readable)
    try:
        on_change("listening")
        await asyncio.Event().wait()  # until cancelled
    finally:
        loop.remove_reader(watched)
        os.close(watched)


def _inotify(folder: Path) -> int | None:
    """An inotify descriptor watching ``folder``'s files, or None where there is none."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            return None
        mask = _IN_MODIFY | _IN_ATTRIB | _IN_CREATE | _IN_MOVED_TO
        if libc.inotify_add_watch(fd, str(folder).encode(), mask) < 0:
            os.close(fd)
            return None
    except (OSError, AttributeError):
        return None
    return fd


async def _poll(path: Path, on_change: Callable[[str], None]) -> None:
    def stamp() -> tuple[int, int]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_ino)

    last = stamp()
    on_change("listening")
    while True:
        await asyncio.sleep(_POLL_SECONDS)
        now = stamp()
        if now != last:
            last = now
            on_change("changed")
