"""Fixtures shared by every tier: a fresh database per test on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
# And one migrated SQLite file, copied for each test: a copy takes milliseconds, running the
# migrations into every new file took a good part of a second per test.
_sqlite_template: Path | None = None


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


class Clones:
    """Clones of the PostgreSQL template, made and dropped by one background thread while
    the tests run: CREATE DATABASE and DROP DATABASE each wait on the disk for a good part
    of a second (more on a loaded machine), which no test needs to wait for. The next clone
    is made ahead of time; a used one is dropped after its test. Every clone is new and
    never reused, as before."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-clones")
        self._ready: deque[Future[str]] = deque()
        self._drops: list[Future[None]] = []

    @staticmethod
    def _create() -> str:
        name = f"conveyor_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return name

    @staticmethod
    def _drop(name: str) -> None:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def take(self) -> str:
        if not self._ready:
            self._ready.append(self._thread.submit(self._create))
        name = self._ready.popleft().result()
        self._ready.append(self._thread.submit(self._create))
        return name

    def give_back(self, name: str) -> None:
        for done in [d for d in self._drops if d.done()]:
            done.result()  # a failed drop fails a test, never silently
        self._drops = [d for d in self._drops if not d.done()]
        self._drops.append(self._thread.submit(self._drop, name))

    def close(self) -> None:
        """Drop what is left (the clone made ahead included); raise a failed drop."""
        while self._ready:
            self.give_back(self._ready.popleft().result())
        self._thread.shutdown(wait=True)
        for drop in self._drops:
            drop.result()


_clones: Clones | None = None


def _sqlite_template_file() -> Path:
    global _sqlite_template
    if _sqlite_template is None:
        path = Path(tempfile.mkdtemp(prefix="conveyor-template-")) / "conveyor.db"
        db = Database(f"sqlite:///{path}")
        db.migrate()
        db.dispose()  # closes the last connection: the WAL is checkpointed into the file
        wal = path.with_name(path.name + "-wal")
        assert not wal.exists(), f"{wal} is left: a copy of the file alone would miss it"
        _sqlite_template = path
    return _sqlite_template


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _clones is not None:
        _clones.close()
    if _template_ready:
        admin(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
    if _sqlite_template is not None:
        shutil.rmtree(_sqlite_template.parent, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A migrated, empty database of ``backend`` (a SQLite file in ``folder``, or a clone of
    the PostgreSQL template); dropped afterwards. Shared by fixtures of every scope."""
    if backend == "sqlite":
        path = folder / "conveyor.db"
        shutil.copyfile(_sqlite_template_file(), path)
        yield f"sqlite:///{path}"
        return
    global _clones
    require_postgres()
    _pg_template()
    if _clones is None:
        _clones = Clones()
    name = _clones.take()
    try:
        yield pg_url(name)
    finally:
        _clones.give_back(name)


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
