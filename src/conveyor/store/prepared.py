"""Prepared statements for the hot paths: a SQLAlchemy Core statement compiled ONCE per
engine and then run straight on the driver connection of the current transaction.

SQLAlchemy's per-execution work (cache key, execution context, result proxy) costs several
times the database round trip on a small machine; the statements the runner and the claimer
issue for every step are few and fixed, so they skip it. Parameters and results still go
through the column types' own bind and result processors, so values round-trip exactly as
through SQLAlchemy (timestamps on SQLite, JSON). psycopg prepares them server-side after a
few executions, as it does for any repeated query.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement for one engine; ``rows``/``run`` execute it in ``conn``'s transaction."""

    def __init__(self, statement: ClauseElement, dialect: Any) -> None:
        compiled: Any = statement.compile(dialect=dialect)  # an SQLCompiler
        self.sql = str(compiled)
        if "POSTCOMPILE" in self.sql:
            raise ValueError("prepared statements cannot expand IN lists; bind JSON rows instead")
        self.defaults: dict[str, Any] = dict(compiled.params)
        self.binds: dict[str, Processor] = dict(compiled._bind_processors)
        self.order: list[str] | None = (
            list(compiled.positiontup or []) if compiled.positional else None
        )
        columns = compiled._result_columns or []
        self.results: list[Processor] = [
            column[3].dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        self.row: Any = namedtuple("Row", [c[0] for c in columns], rename=True)  # type: ignore[misc]

    def _params(self, params: Mapping[str, Any]) -> Any:
        values = {**self.defaults, **params}
        for name, process in self.binds.items():
            if process is not None and name in values:
                values[name] = process(values[name])
        if self.order is not None:
            return tuple(values[name] for name in self.order)
        return values

    def _execute(self, conn: Connection, params: Mapping[str, Any], fetch: bool) -> Any:
        bound = self._params(params)
        dbapi = conn.dialect.loaded_dbapi
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, bound)
            if fetch:
                return cursor.fetchall() if cursor.description is not None else []
            return int(cursor.rowcount)
        except dbapi.Error as exc:
            # The same exceptions SQLAlchemy raises (IntegrityError, OperationalError, ...).
            raise DBAPIError.instance(self.sql, bound, exc, dbapi.Error) from exc
        finally:
            cursor.close()

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Execute and fetch every row, each value through its type's result processor."""
        fetched = self._execute(conn, params, fetch=True)
        make = self.row._make
        if not any(self.results):
            return [make(r) for r in fetched]
        processors = self.results
        return [
            make(v if p is None else p(v) for v, p in zip(r, processors, strict=True))
            for r in fetched
        ]

    def rows_of(self, conn: Connection, sql: str, bound: Any) -> list[Any]:
        """Execute ``sql``, a statement built around this one whose first columns are this
        one's (a CTE selecting from it), with parameters already bound (``_params``); its
        rows as :meth:`rows` makes them, without the columns after this one's."""
        dbapi = conn.dialect.loaded_dbapi
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, bound)
            fetched = cursor.fetchall()
        except dbapi.Error as exc:
            raise DBAPIError.instance(sql, bound, exc, dbapi.Error) from exc
        finally:
            cursor.close()
        make = self.row._make
        processors = self.results
        width = len(processors)
        return [
            make(v if p is None else p(v) for v, p in zip(r[:width], processors, strict=True))
            for r in fetched
        ]

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute; return the number of rows it changed."""
        return int(self._execute(conn, params, fetch=False))


_CACHE: dict[tuple[str, str, str], Prepared] = {}


def prepared(conn: Connection, name: str, build: Callable[[], ClauseElement]) -> Prepared:
    """The statement ``name`` compiled for ``conn``'s dialect (built on first use)."""
    dialect = conn.dialect
    key = (dialect.name, dialect.driver, name)
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = Prepared(build(), dialect)
    return found


Call = tuple[Prepared, Mapping[str, Any]]


def run_together(conn: Connection, calls: list[Call]) -> None:
    """Run statements whose results nobody reads in ONE round trip where the driver can
    (psycopg's pipeline mode); one after the other elsewhere (SQLite is in-process)."""
    raw: Any = conn.connection.dbapi_connection
    if not hasattr(raw, "pipeline"):
        for statement, params in calls:
            statement.run(conn, params)
        return
    dbapi = conn.dialect.loaded_dbapi
    current = ""
    try:
        with raw.pipeline(), raw.cursor() as cursor:
            for statement, params in calls:
                current = statement.sql
                cursor.execute(statement.sql, statement._params(params))
    except dbapi.Error as exc:
        raise DBAPIError.instance(current, None, exc, dbapi.Error) from exc
