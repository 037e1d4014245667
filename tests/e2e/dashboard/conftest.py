"""Fixtures of the dashboard tests: a real ``conveyor server`` (the installed program, with
its embedded worker) on SQLite and on PostgreSQL, and Chromium pages signed in to it.

A server and a Chromium start once per test module (and backend), not once per test: each
test gets a fresh browser context signed in anew, and creates its own workflows and users.
Tests that need an empty workspace carry ``@pytest.mark.fresh_server``."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.conftest import BACKENDS, fresh_database
from tests.e2e.dashboard.browser import CHROMIUM_ARGS, DESKTOP, chromium_path
from tests.e2e.test_server import ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess

EXPECT_TIMEOUT_MS = 15_000  # a loaded 2-core CI machine: generous, never a sleep
# expect() has its own default (5 s); the context's default timeout does not reach it.
expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def conveyor_program() -> list[str]:
    """The ``conveyor`` script the README's install put beside this Python."""
    script = Path(sys.executable).parent / "conveyor"
    found = str(script) if script.exists() else shutil.which("conveyor")
    assert found, "the conveyor program is not installed (pip install -e .)"
    return [found]


# Per module, not per session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, which the async tests of the same session cannot share (every test
# in this folder is synchronous; the module ends before any async test starts).
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """One Chromium per module; each test gets its own context (cookies, storage, pages)."""
    executable = chromium_path()
    instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    try:
        yield instance
    finally:
        instance.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the other backend's run of a module marked ``one_backend(name)`` (its pages'
    queries run on both databases in the API tests; a browser journey per backend costs a
    server and a Chromium each)."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("one_backend")
        callspec = getattr(item, "callspec", None)
        chosen = callspec.params.get("backend") if callspec is not None else None
        if marker is not None and chosen is not None and chosen != marker.args[0]:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Module-scoped here (tests/conftest.py's is per test), so pytest runs a module's tests
    backend by backend and the server started for one backend serves all of them."""
    return str(request.param)


@contextmanager
def started_dashboard(
    backend: str, folder: Path, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """``conveyor server`` with an embedded worker and the test plugin nodes, on a new
    database of ``backend`` (``env``: more environment variables for it)."""
    with fresh_database(backend, folder) as database_url:
        process = ServerProcess(
            database_url,
            folder / "server.log",
            concurrency=8,
            program=conveyor_program(),
            args=("--plugin", "tests.e2e.nodes", "--allow-private-network"),
            env=env,
        )
        try:
            process.wait_ready(within=30)
            yield process
        finally:
            process.close()


@pytest.fixture(scope="module")
def module_dashboard(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The server every test of a module shares on one backend: a server start costs
    seconds, so the tests of a module isolate themselves by what they create (their own
    workflow names, users and browser contexts) instead."""
    with started_dashboard(backend, tmp_path_factory.mktemp(f"dashboard-{backend}")) as server:
        yield server


@pytest.fixture
def dashboard(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Iterator[ServerProcess]:
    """The module's shared server; a test (or module) marked ``fresh_server``, whose checks
    read the whole workspace (counts, member lists, statistics), gets one of its own on an
    empty database. ``dashboard.base_url`` and ``dashboard.database_url`` name them."""
    if request.node.get_closest_marker("fresh_server") is None:
        yield request.getfixturevalue("module_dashboard")
        return
    with started_dashboard(backend, tmp_path) as server:
        yield server


@pytest.fixture
def database_url(dashboard: ServerProcess) -> str:
    """The database of the test's server (the tests add users to it with the CLI)."""
    return dashboard.database_url


def new_context(browser: Browser, server: ServerProcess, **options: object) -> BrowserContext:
    context = browser.new_context(base_url=server.base_url, viewport=DESKTOP, **options)  # type: ignore[arg-type]
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    return context


def sign_in(
    context: BrowserContext, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD
) -> None:
    """Sign in through the API (the session cookie lands in the context)."""
    response = context.request.post(
        "/api/v1/auth/login", data={"email": email, "password": password}
    )
    assert response.ok, response.text()


@pytest.fixture
def context(browser: Browser, dashboard: ServerProcess) -> Iterator[BrowserContext]:
    """A signed-in browser context (the admin, owner of the default workspace)."""
    ctx = new_context(browser, dashboard)
    try:
        sign_in(ctx)
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A signed-in page; fails the test on any console error or CSP violation."""
    tab = context.new_page()
    errors: list[str] = []
    # A 4xx answer the test provoked logs "Failed to load resource"; scripts must not fail.
    tab.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    assert not errors, "the page logged errors:\n" + "\n".join(errors)
