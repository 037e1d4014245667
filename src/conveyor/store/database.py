"""The database handle: URL handling, engine, read/write transactions, migrations."""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DBAPIError, OperationalError
from sqlalchemy.sql.elements import ColumnClause, ColumnElement
from sqlalchemy.sql.selectable import FromClause

from conveyor.errors import DatabaseUnreachable, InputError, StoreUnavailable
from conveyor.store.postgres import PostgresDialect
from conveyor.store.prepared import Call
from conveyor.store.sqlite import WRITE_OPTION, SQLiteDialect
from conveyor.store.tables import dumps

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions: checked before importing Alembic (tens of MB),
# so a process whose schema is current never loads it. A unit test keeps it in step.
HEAD_REVISION = "0012"


class StoreDialect(Protocol):
    name: str
    supports_skip_locked: bool
    ids_commit_in_order: bool

    def normalize(self, url: URL) -> URL: ...
    def create_engine(
        self, url: URL, *, json_serializer: Any, json_deserializer: Any
    ) -> Engine: ...
    def now(self) -> ColumnElement[Any]: ...
    def now_plus(self, seconds: float) -> ColumnElement[Any]: ...
    def now_plus_seconds(self, seconds: ColumnElement[Any]) -> ColumnElement[Any]: ...
    def json_rows(self, *columns: ColumnClause[Any]) -> FromClause: ...
    def json_value(self, text_column: ColumnElement[Any]) -> ColumnElement[Any]: ...
    def time_value(self, value: datetime | None) -> Any: ...
    def json_bytes(self, column: ColumnElement[Any]) -> ColumnElement[Any]: ...
    def time_bucket(self, column: ColumnElement[Any], unit: str) -> ColumnElement[Any]: ...
    def duration_ms(self, start: ColumnElement[Any], end: ColumnElement[Any]) -> Any: ...
    def sample_every(self, n: int) -> ColumnElement[bool]: ...
    def percentiles(
        self, value: ColumnElement[Any], fractions: tuple[float, ...]
    ) -> list[ColumnElement[Any]] | None: ...
    def listener(
        self, url: URL, channel: str, on_message: Callable[[str], None]
    ) -> Coroutine[Any, Any, None] | None: ...
    def after_commit(self, url: URL, info: dict[str, Any]) -> None: ...
    def watch_changes(
        self, url: URL, on_change: Callable[[str], None], channel: str
    ) -> Coroutine[Any, Any, None] | None: ...
    def event_writers(self, conn: Connection) -> frozenset[str]: ...
    def writers_running(self, conn: Connection, writers: frozenset[str]) -> bool: ...
    def lock_keys(self, conn: Connection, keys: list[str]) -> None: ...
    def notify(self, conn: Connection, channel: str, payload: str) -> None: ...
    def notify_calls(self, conn: Connection, channel: str, payloads: list[str]) -> list[Call]: ...
    def lock_suffix(self) -> str: ...
    def index_hint(self, index: str) -> str: ...
    def database_exists_hint(self, url: URL) -> str: ...


def new_id() -> str:
    """A 32-hex-digit id whose first 12 digits are milliseconds: sortable by creation time."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def parse_url(raw: str) -> URL:
    """Accept SQLAlchemy URLs, ``postgresql://`` / ``postgres://`` and bare SQLite file paths."""
    if "://" not in raw:
        raw = f"sqlite:///{raw}"
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    try:
        return make_url(raw)
    except ArgumentError as exc:
        raise InputError(f"'{raw}' is not a database URL: {exc}") from None


def dialect_for(url: URL) -> StoreDialect:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return SQLiteDialect()
    if backend == "postgresql":
        return PostgresDialect()
    raise InputError(f"unsupported database '{backend}': use sqlite:///FILE or postgresql://...")


class Database:
    """One database: a pooled engine plus the dialect that knows its differences."""

    def __init__(self, url: str) -> None:
        parsed = parse_url(url)
        self.dialect = dialect_for(parsed)
        self.url = self.dialect.normalize(parsed)
        if self.dialect.name == "sqlite" and self.url.database not in (None, "", ":memory:"):
            folder = Path(self.url.database or "").resolve().parent
            if not folder.is_dir():
                raise StoreUnavailable(f"cannot open {url}: folder {folder} does not exist")
        self.engine = self.dialect.create_engine(
            self.url, json_serializer=dumps, json_deserializer=orjson.loads
        )

    @property
    def name(self) -> str:
        return self.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        with self._errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection outside any transaction (PostgreSQL): each statement run on its
        driver connection commits by itself, in the statement's own round trip."""
        with self._errors(), self.engine.connect() as conn:
            raw: Any = conn.connection.dbapi_connection
            raw.autocommit = True
            try:
                yield conn
            finally:
                try:
                    raw.autocommit = False
                except Exception:  # a broken connection: never hand it out again
                    conn.invalidate()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except DatabaseError as exc:
            self._raise_if_not_a_database(exc)
            if not isinstance(exc, OperationalError):
                raise
            if self.dialect.name == "sqlite" and _is_lock_timeout(exc):
                # Another process held the write lock past the busy timeout (a long
                # transaction, a stopped process): a moment's unavailability, not a fault.
                raise StoreUnavailable(
                    "the database is busy: another process has held its lock for longer "
                    "than the busy timeout; retry shortly"
                ) from exc
            if _is_connection_error(exc):
                hint = self.dialect.database_exists_hint(self.url)
                raise DatabaseUnreachable(
                    f"cannot reach the database {self.url.render_as_string()}: "
                    f"{str(exc.orig).strip().splitlines()[0]} ({hint})"
                ) from exc
            raise

    def _raise_if_not_a_database(self, exc: DatabaseError) -> None:
        """A file that is not (or no longer) a SQLite database fails on the first statement
        of every connection; say so in one line instead of a driver traceback."""
        message = str(exc.orig).lower()
        if self.dialect.name == "sqlite" and any(m in message for m in _NOT_A_DATABASE):
            raise StoreUnavailable(
                f"cannot open {self.url.database}: it is not a SQLite database "
                f"({str(exc.orig).strip()})"
            ) from exc

    def now(self) -> ColumnElement[Any]:
        return self.dialect.now()

    def migrate(self) -> None:
        """Bring the schema to the latest migration (cheap when it already is)."""
        if self._current_revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.write() as conn:
            if self.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(7244719)"))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def _current_revision(self) -> str | None:
        from sqlalchemy import column, table

        version = table("alembic_version", column("version_num"))
        try:
            with self.read() as conn:
                return conn.execute(select(version.c.version_num)).scalar()
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, DatabaseError):
                self._raise_if_not_a_database(exc)
            if isinstance(exc, OperationalError) and _is_connection_error(exc):
                raise DatabaseUnreachable(
                    f"cannot open the database {self.url.render_as_string()}: "
                    f"{str(exc.orig).strip().splitlines()[0]}"
                ) from exc
            return None

    def dispose(self) -> None:
        self.engine.dispose()


# What SQLite says about a file that is not a database, or is a damaged one.
_NOT_A_DATABASE = ("file is not a database", "is encrypted or is not a database", "malformed")


def _is_lock_timeout(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message


def _is_connection_error(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    markers = (
        "connection",
        "could not connect",
        "unable to open",
        "does not exist",
        "server closed",
        "terminating",
        "timeout expired",
        "refused",
    )
    return any(m in message for m in markers) and "no such table" not in message


def database_from_env(default: str) -> Database:
    return Database(os.environ.get("CONVEYOR_DATABASE_URL", default))
