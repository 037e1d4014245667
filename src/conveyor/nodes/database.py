"""The ``db.query`` node type: one parameterised SQL statement against a database credential
(PostgreSQL, MySQL/MariaDB or SQLite), returning its rows as JSON.

The SQL text is never rendered as a template (``"x-template": False``): data reaches the
statement only through ``params``, bound by the driver.
"""

from __future__ import annotations

import asyncio
import base64
import math
import socket
from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from conveyor.durations import Duration
from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext, NodeType
from conveyor.nodes.database_drivers import (
    Query,
    Rows,
    Target,
    run_mysql,
    run_postgres,
    run_sqlite,
)

_KINDS = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
# Past the statement timeout, how long the whole call (connect, statement, fetch) may take
# before it is given up on the client side as well.
_GRACE = timedelta(seconds=10)


class DbQueryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: str = Field(
        min_length=1,
        description="name of a credential of type database: {url: postgresql://user:pw@host"
        ":5432/db | mysql://… | mariadb://… | sqlite:///relative.db | sqlite:////abs.db}",
    )
    sql: str = Field(
        min_length=1,
        description="one SQL statement, used exactly as written (never rendered as a "
        "template); placeholders: %s or %(name)s on PostgreSQL and MySQL/MariaDB, ? or :name "
        "on SQLite",
        json_schema_extra={
            "x-template": False,
            "x-template-hint": "write placeholders in the SQL and pass the values in 'params'",
        },
    )
    params: list[Any] | dict[str, Any] | None = Field(
        default=None,
        description="the placeholders' values (a list for positional placeholders, a map for "
        "named ones); templates allowed: values are bound by the driver, never spliced",
        # The whole value may be one template rendering to a list or a map.
        json_schema_extra={"x-template": True},
    )
    mode: Literal["read", "write"] = Field(
        default="read",
        description="read: runs in a read-only transaction (a write fails); write: runs in a "
        "transaction that is committed",
    )
    max_rows: int = Field(
        default=1000, ge=1, le=100_000, description="rows returned at most; more: truncated"
    )
    timeout: Duration = Field(
        default=timedelta(seconds=30), description="statement timeout, enforced by the server"
    )


class DbQuery(NodeType):
    """Run one parameterised SQL statement; rows come back as JSON objects."""

    name = "db.query"
    title = "Database query"
    category = "data"
    icon = "database"
    description = "Run one parameterised SQL statement against PostgreSQL, MySQL/MariaDB or SQLite."
    config_model = DbQueryConfig
    example = {
        "id": "orders",
        "type": "db.query",
        "config": {
            "credential": "shop-db",
            "sql": "SELECT id, total FROM orders WHERE customer_id = %(customer)s",
            "params": {"customer": "{{ input.customer_id }}"},
            "max_rows": 100,
        },
    }

    async def run(self, ctx: NodeContext, config: DbQueryConfig) -> Any:
        credential = await ctx.credential(config.credential, "database")
        target = parse_url(credential.data.get("url"), config.credential)
        timeout = config.timeout.total_seconds()
        query = Query(
            sql=config.sql,
            params=config.params if config.params else None,
            read_only=config.mode == "read",
            max_rows=config.max_rows,
            timeout=timeout,
        )
        try:
            async with asyncio.timeout(timeout + _GRACE.total_seconds()) as scope:
                rows = await _run(ctx, target, query)
        except TimeoutError:
            if not scope.expired():
                raise
            raise NodeError(f"{_label(target)} did not answer within {timeout:g}s") from None
        ctx.report_usage(api_calls=1)
        ctx.log.info(
            f"{_label(target)}: {len(rows.rows)} rows" + (" (truncated)" if rows.truncated else "")
        )
        return {
            "rows": [
                dict(zip(rows.columns, map(json_value, row), strict=False)) for row in rows.rows
            ],
            "row_count": len(rows.rows),
            "columns": rows.columns,
            "truncated": rows.truncated,
            "affected_rows": rows.affected,
        }


async def _run(ctx: NodeContext, target: Target, query: Query) -> Rows:
    if target.kind == "sqlite":
        return await run_sqlite(target, query)
    from conveyor.nodes.outbound import resolve

    default_port = 5432 if target.kind == "postgresql" else 3306
    try:
        address = await resolve(target.host, target.port or default_port, ctx.network)
    except socket.gaierror as exc:
        raise NodeError(f"{_label(target)}: cannot resolve {target.host}: {exc}") from None
    if target.kind == "postgresql":
        return await run_postgres(target, address, query)
    return await run_mysql(target, address, query)


def _label(target: Target) -> str:
    return {"postgresql": "PostgreSQL", "mysql": "MySQL", "sqlite": "SQLite"}[target.kind]


def parse_url(url: Any, credential: str) -> Target:
    """The target of a database credential's URL. Errors name the credential, never the
    URL (it holds the password)."""

    def bad(why: str) -> NodeError:
        return NodeError(f"credential '{credential}': {why}", non_retryable=True)

    if not isinstance(url, str) or "://" not in url:
        raise bad("its url must look like postgresql://user:password@host:5432/database")
    scheme = url.split("://", 1)[0].lower()
    kind = _KINDS.get(scheme)
    if kind is None:
        raise bad(f"unsupported scheme '{scheme}' (use one of {', '.join(sorted(_KINDS))})")
    if kind == "sqlite":
        path = url.split("://", 1)[1][1:]
        if not path:
            raise bad("a SQLite url names a file: sqlite:///relative.db or sqlite:////abs.db")
        return Target(kind, path=path.split("?", 1)[0])
    parts = urlsplit(url)
    try:
        port = parts.port or 0
    except ValueError:
        raise bad("its port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise bad("its url names no host")
    return Target(
        kind,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=unquote(parts.path.lstrip("/")),
        options=dict(parse_qsl(parts.query)),
    )


def json_value(value: Any) -> Any:
    """A column value as JSON: datetimes, dates and times in ISO 8601, intervals in seconds,
    decimals as strings (exact), bytes in base64, UUIDs and anything else as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    return str(value)  # Decimal (exact), UUID, network addresses, ranges
