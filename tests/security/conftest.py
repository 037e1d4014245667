"""Fixtures of the security suite: one seeded world per backend, shared by the suite's
modules (seeding hashes a dozen passwords and clones a database: seconds on a loaded
machine). Each test sends requests that must be refused and checks the tables did not
change around them, so sharing cannot hide a failure; the few that create something use
names of their own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.conftest import BACKENDS, fresh_database
from tests.security.routes import ENDPOINTS
from tests.security.world import World, opened


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Session-scoped here (per test in tests/conftest.py), so pytest runs the suite backend
    by backend on one world each."""
    return str(request.param)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def world(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    with fresh_database(backend, tmp_path_factory.mktemp(f"security-{backend}")) as url:
        async with opened(url, ENDPOINTS) as seeded:
            yield seeded
