"""PostgreSQL specifics: psycopg 3, SKIP LOCKED, the clock as SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, func, text
from sqlalchemy.engine import URL
from sqlalchemy.sql.elements import ColumnElement

from conveyor.store.tables import UTCDateTime


class PostgresDialect:
    name = "postgresql"
    supports_skip_locked = True

    def normalize(self, url: URL) -> URL:
        return url.set(drivername="postgresql+psycopg")

    def create_engine(self, url: URL, *, json_serializer: Any, json_deserializer: Any) -> Engine:
        return create_engine(
            url,
            json_serializer=json_serializer,
            json_deserializer=json_deserializer,
            pool_size=10,
            max_overflow=20,
            connect_args={"connect_timeout": 5, "application_name": "conveyor"},
        )

    def now(self) -> ColumnElement[Any]:
        return func.clock_timestamp(type_=UTCDateTime())

    def now_plus(self, seconds: float) -> ColumnElement[Any]:
        interval = func.make_interval(0, 0, 0, 0, 0, 0, float(seconds))
        return func.clock_timestamp(type_=UTCDateTime()) + interval

    def lock_keys(self, conn: Any, keys: list[str]) -> None:
        """Transaction-scoped advisory locks, taken in sorted order so claimers never
        deadlock."""
        for key in keys:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})

    def lock_suffix(self) -> str:
        return " FOR UPDATE SKIP LOCKED"

    def database_exists_hint(self, url: URL) -> str:
        return (
            f"check that PostgreSQL runs at {url.host}:{url.port or 5432} and the database exists"
        )
