"""Test support: an injectable clock, PostgreSQL test databases, the code node's sandbox."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

PG_ADMIN_URL = os.environ.get("CONVEYOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_TEMPLATE = "conveyor_test_template"


class FakeClock:
    """A clock whose sleeps return at once and move time forward; it records each sleep."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += timedelta(seconds=max(seconds, 0.0))
        await asyncio.sleep(0)


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}".strip()


def require_postgres() -> None:
    reason = postgres_available()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def require_bubblewrap() -> None:
    """Skip (fail under CI=true) where bubblewrap is missing or cannot make namespaces."""
    found = shutil.which("bwrap")
    probe = [str(found), "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    if (
        found
        and subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    ):
        return
    reason = "bubblewrap is not installed or cannot create namespaces here"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def pg_url(database: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{database}"


def admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]
