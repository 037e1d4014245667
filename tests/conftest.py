"""Fixtures shared by every tier: a fresh database per test on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.store import Database
from tests.support import PG_TEMPLATE, FakeClock, admin, pg_url, require_postgres

BACKENDS = ["sqlite", "postgres"]
# Secrets at rest in tests: one fixed key (never a key file in the home folder).
os.environ.setdefault("CONVEYOR_SECRET_KEY", "conveyor-tests-secret-key-0123456789abcdef")
# One migrated template per pytest process, so concurrent sessions never share one.
TEMPLATE = f"{PG_TEMPLATE}_{os.getpid()}"
_template_ready = False


def _pg_template() -> None:
    global _template_ready
    if _template_ready:
        return
    admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
    admin(f"CREATE DATABASE {TEMPLATE}")
    db = Database(pg_url(TEMPLATE))
    db.migrate()
    db.dispose()
    _template_ready = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _template_ready:
        admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A migrated, empty database of ``backend`` (a SQLite file in ``folder``, or a clone of
    the PostgreSQL template); dropped afterwards. Shared by fixtures of every scope."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'conveyor.db'}"
        db = Database(url)
        db.migrate()
        db.dispose()
        yield url
        return
    require_postgres()
    _pg_template()
    name = f"conveyor_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        yield pg_url(name)
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of the backend under test; dropped afterwards."""
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def conveyor(database_url: str) -> AsyncIterator[Conveyor]:
    """Conveyor on the test database with the real system clock; local HTTP allowed."""
    app = await Conveyor.open(database_url, build_registry(allow_private_network=True))
    try:
        yield app
    finally:
        app.close()
