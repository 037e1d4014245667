"""Fixtures of the dashboard tests: a real ``conveyor server`` (the installed program, with
its embedded worker) on SQLite and on PostgreSQL, and Chromium pages signed in to it."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
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


# Per test, not per session: Playwright's sync API keeps an event loop running in the main
# thread while it is open, which the async tests of the same session cannot share.
@pytest.fixture
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = chromium_path()
    instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def dashboard(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """``conveyor server`` with an embedded worker and the test plugin nodes."""
    process = ServerProcess(
        database_url,
        tmp_path / "server.log",
        concurrency=8,
        program=conveyor_program(),
        args=("--plugin", "tests.e2e.nodes", "--allow-private-network"),
    )
    try:
        process.wait_ready(within=30)
        yield process
    finally:
        process.close()


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
