"""The executions page (the monitor) of a real ``conveyor server``: the live running count,
rows that follow their executions, filters kept in the URL, and bulk cancel by filter."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.e2e.conftest import Side
from tests.e2e.dashboard.browser import PHONE, assert_accessible, screenshot
from tests.e2e.dashboard.conftest import (
    conveyor_program,
    new_context,
    sign_in,
)
from tests.e2e.dashboard.pages_executions import ExecutionsPage
from tests.e2e.dashboard.test_workflow_page import WorkflowPage
from tests.e2e.test_server import ServerProcess, api_key

WS = "/api/v1/workspaces/default"
# The monitor counts every execution of the workspace: each test needs an empty one.
pytestmark = pytest.mark.fresh_server
VIEWER, VIEWER_PASSWORD = "viewer@example.com", "viewer-password-e2e"
# A step that keeps its execution running for 2 s (a ``wait`` that long would be released
# as waiting: the e2e profile holds timers for 1 s only). Its calls go to the side table.
BUSY = {
    "name": "busy",
    "nodes": [{"id": "work", "type": "e2e.work", "config": {"sleep": 2.0}}],
}
LONG = {
    "name": "waits-for-go",
    "nodes": [{"id": "hold", "type": "wait_for_event", "config": {"event": "go"}}],
}
QUICK = {
    "name": "quick",
    "nodes": [
        {"id": "echo", "type": "transform", "config": {"output": {"who": "{{ input.who }}"}}}
    ],
}
BROKEN = {
    "name": "broken",
    "nodes": [{"id": "boom", "type": "fail", "config": {"message": "the disk is full"}}],
}


@pytest.fixture
def client(dashboard: ServerProcess) -> Iterator[httpx.Client]:
    """The REST API as a member (an API key): what a second user or a script would do."""
    key = api_key(dashboard.base_url)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=dashboard.base_url, headers=headers, timeout=15) as session:
        yield session


def apply(client: httpx.Client, *definitions: dict[str, Any]) -> None:
    for definition in definitions:
        answer = client.post(f"{WS}/workflows", json={"definition": definition})
        assert answer.status_code == 201, answer.text


def execute(client: httpx.Client, workflow: str, data: Any = None) -> str:
    answer = client.post(f"{WS}/workflows/{workflow}/execute", json={"input": data or {}})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["execution_id"])


def statuses(client: httpx.Client, ids: list[str]) -> dict[str, str]:
    return {i: client.get(f"{WS}/executions/{i}").json()["status"] for i in ids}


def create_user(database_url: str, email: str, role: str) -> None:
    """``conveyor users create``: the dashboard has no sign-up."""
    environment = {**os.environ, "CONVEYOR_NEW_PASSWORD": VIEWER_PASSWORD}
    subprocess.run(
        [*conveyor_program(), "users", "create", email, "--role", role, "--database", database_url],
        env=environment,
        check=True,
        capture_output=True,
        timeout=30,
    )


def until(check: Callable[[], bool], what: str, within: float = 20) -> None:
    """Poll the API (not the page) with a deadline."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within:g}s: {what}"
        time.sleep(0.1)


def test_the_running_count_rises_and_falls_live(
    page: Page, client: httpx.Client, side: Side, browser: Browser, dashboard: ServerProcess
) -> None:
    apply(client, BUSY, QUICK, BROKEN)
    earlier = [execute(client, "quick", {"who": w}) for w in ("ann", "bob")]
    earlier.append(execute(client, "broken", {"who": "carol"}))
    until(
        lambda: set(statuses(client, earlier).values()) <= {"succeeded", "failed"},
        "the first executions finished",
    )
    monitor = ExecutionsPage(page).open()
    expect(monitor.running_now).to_have_text("0")
    monitor.wait_live()
    page.evaluate("() => { window.notReloaded = true; }")

    # Someone else, in a browser of their own, presses Run on the busy workflow.
    other = new_context(browser, dashboard)
    sign_in(other)
    runner = WorkflowPage(other.new_page()).open("busy")
    runner.run("{}")
    expect(monitor.running_now).to_have_text("1")
    expect(runner.run_button).to_contain_text("✓")
    expect(monitor.running_now).to_have_text("0")
    other.close()

    ids = [execute(client, "busy", {"n": n}) for n in range(3)]
    expect(monitor.running_now).to_have_text(re.compile(r"^[1-9]\d*$"))
    # The new executions arrive at the top of the first page, without a reload.
    for execution_id in ids:
        expect(monitor.row(execution_id)).to_be_visible()
    expect(monitor.rows.first).to_have_attribute("data-execution-id", ids[-1])
    screenshot(page, "executions-monitor")

    expect(monitor.running_now).to_have_text("0")
    for execution_id in ids:
        row = monitor.row(execution_id)
        expect(row.locator(".badge")).to_have_text("succeeded")
        expect(row).to_contain_text("1 / 1")
    expect(monitor.count("succeeded")).to_have_text("6")
    expect(monitor.count("failed")).to_have_text("1")
    expect(monitor.count("running")).to_have_text("0")
    assert page.evaluate("() => window.notReloaded === true")
    assert_accessible(page)

    # On an older page, a new execution is announced rather than added.
    monitor.open("limit=2")
    page.get_by_role("link", name="Older").click()
    expect(page).to_have_url(re.compile(r"limit=2&cursor="))
    expect(monitor.rows).to_have_count(2)
    monitor.wait_live()
    newer = execute(client, "quick", {"who": "dan"})
    announced = page.get_by_role("link", name="1 new — show")
    expect(announced).to_be_visible()
    expect(monitor.rows).to_have_count(2)
    announced.click()
    expect(monitor.rows.first).to_have_attribute("data-execution-id", newer)
    expect(monitor.rows).to_have_count(2)


def test_what_happens_between_the_render_and_the_stream_shows_up(
    page: Page, client: httpx.Client
) -> None:
    """The page renders with the event id it reflects and its stream starts after it: an
    execution queued and finished while the stream was not yet connected still appears."""
    apply(client, QUICK)
    held: list[Route] = []
    workspace_stream = re.compile(r"/api/v1/workspaces/default/stream(\?.*)?$")

    def hold(route: Route) -> None:  # the page's first connection waits (until continued)
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route(workspace_stream, hold)
    monitor = ExecutionsPage(page).open()
    expect(monitor.rows).to_have_count(0)
    deadline = time.monotonic() + 20
    while not held:  # the page asked for its stream; it waits here
        assert time.monotonic() < deadline, "the page never opened its workspace stream"
        page.wait_for_timeout(50)

    between = execute(client, "quick", {"who": "between"})
    until(lambda: statuses(client, [between])[between] == "succeeded", "it finished")
    held[0].continue_()
    monitor.wait_live()
    row = monitor.row(between)
    expect(row).to_be_visible()
    expect(row.locator(".badge")).to_have_text("succeeded")
    expect(monitor.count("succeeded")).to_have_text("1")
    assert "?after=" in held[0].request.url, held[0].request.url  # the page's cursor


@pytest.mark.timeout(240)  # fifty executions 8 at a time, on a loaded 2-core machine
def test_fifty_executions_at_once_keep_the_monitor_right_and_the_page_responsive(
    page: Page, client: httpx.Client, side: Side
) -> None:
    """50 executions queued in one request (the server runs 8 at a time): the running count
    follows, every row arrives and ends succeeded, the counts add up, and the page answers
    a click meanwhile; no timing bound beyond the usual expect() deadlines."""
    apply(
        client, {**BUSY, "name": "fifty", "nodes": [{**BUSY["nodes"][0], "config": {"sleep": 0.5}}]}
    )
    monitor = ExecutionsPage(page).open()
    expect(monitor.running_now).to_have_text("0")
    page.evaluate("() => { window.notReloaded = true; }")
    answer = client.post(
        f"{WS}/workflows/fifty/execute", json=[{"input": {"n": n}} for n in range(50)]
    )
    assert answer.status_code == 202, answer.text
    ids = [str(item["execution_id"]) for item in answer.json()["items"]]
    assert len(set(ids)) == 50

    expect(monitor.running_now).to_have_text(re.compile(r"^[1-9]\d*$"))
    filters = page.locator("#filters-panel")
    filters.locator("summary").click()  # the page answers while the events pour in
    expect(monitor.filters).to_be_hidden()
    filters.locator("summary").click()
    expect(monitor.filters).to_be_visible()

    def succeeded() -> int:
        listing = client.get(f"{WS}/executions?workflow=fifty&limit=1&stats=true").json()
        return int(listing["stats"]["by_status"].get("succeeded", 0))

    until(lambda: succeeded() == 50, "the fifty executions succeeded", within=120)
    expect(monitor.running_now).to_have_text("0")
    expect(monitor.rows).to_have_count(50)
    expect(monitor.rows.locator(".badge", has_text="succeeded")).to_have_count(50)
    expect(monitor.count("succeeded")).to_have_text("50")
    expect(monitor.count("running")).to_have_text("0")
    expect(monitor.count("queued")).to_have_text("0")
    shown = set(monitor.rows.evaluate_all("rows => rows.map(r => r.dataset.executionId)"))
    assert shown == set(ids)
    assert page.evaluate("() => window.notReloaded === true")
    screenshot(page, "executions-fifty")


def test_bulk_cancel_by_filter_touches_only_what_matches(page: Page, client: httpx.Client) -> None:
    apply(client, LONG, QUICK)
    waiting = [execute(client, "waits-for-go", {"n": n}) for n in range(5)]
    finished = [execute(client, "quick", {"who": who}) for who in ("ann", "bob")]
    until(
        lambda: (
            set(statuses(client, waiting).values()) == {"waiting"}
            and set(statuses(client, finished).values()) == {"succeeded"}
        ),
        "5 executions waiting and 2 succeeded",
    )

    monitor = ExecutionsPage(page).open()
    expect(monitor.rows).to_have_count(7)
    monitor.status_filter("running").check()
    monitor.status_filter("waiting").check()
    monitor.apply_filters()
    expect(page).to_have_url(re.compile(r"\?status=running&status=waiting$"))
    expect(monitor.rows).to_have_count(5)
    expect(monitor.count("waiting")).to_have_text("5")

    monitor.bulk.get_by_role("button", name="Cancel all matching").click()
    expect(monitor.dialog).to_contain_text("This will cancel 5 executions.")
    assert_accessible(page)
    screenshot(page, "executions-bulk-confirm")
    monitor.dialog.get_by_role("button", name="Cancel 5 executions").click()
    expect(monitor.bulk_result).to_have_text("Cancelled 5 executions; 0 skipped.")
    expect(monitor.dialog).to_be_hidden()

    assert set(statuses(client, waiting).values()) == {"cancelled"}
    assert set(statuses(client, finished).values()) == {"succeeded"}
    # The table and counts were read again: nothing is running or waiting any more.
    expect(monitor.rows).to_have_count(0)
    expect(page.get_by_text("No execution matches these filters.")).to_be_visible()
    expect(monitor.count("waiting")).to_have_text("0")
    monitor.open()
    for execution_id in waiting:
        expect(monitor.row(execution_id).locator(".badge")).to_have_text("cancelled")
    expect(monitor.count("cancelled")).to_have_text("5")
    expect(monitor.count("succeeded")).to_have_text("2")


def test_filters_live_in_the_url_and_viewers_get_no_controls(
    page: Page, browser: Browser, dashboard: ServerProcess, database_url: str, client: httpx.Client
) -> None:
    apply(client, QUICK, BROKEN)
    alice = execute(client, "quick", {"who": "alice"})
    bob = execute(client, "quick", {"who": "bob"})
    failed = execute(client, "broken", {"who": "carol"})
    until(
        lambda: (
            statuses(client, [alice, bob, failed])
            == {alice: "succeeded", bob: "succeeded", failed: "failed"}
        ),
        "two executions succeeded and one failed",
    )

    monitor = ExecutionsPage(page).open()
    monitor.status_filter("succeeded").check()
    monitor.status_filter("failed").check()
    monitor.apply_filters()
    expect(monitor.rows).to_have_count(3)

    monitor.filters.get_by_label("Workflow").select_option("quick")
    monitor.filters.get_by_label("Search errors and inputs").fill("ALICE")
    monitor.apply_filters()
    expect(page).to_have_url(re.compile(r"workflow=quick"))
    assert parse_qs(urlsplit(page.url).query) == {
        "status": ["succeeded", "failed"],
        "workflow": ["quick"],
        "q": ["ALICE"],
    }
    expect(monitor.rows).to_have_count(1)
    expect(monitor.row(alice)).to_be_visible()

    page.reload()
    expect(monitor.status_filter("succeeded")).to_be_checked()
    expect(monitor.status_filter("failed")).to_be_checked()
    expect(monitor.status_filter("running")).not_to_be_checked()
    expect(monitor.filters.get_by_label("Workflow")).to_have_value("quick")
    expect(monitor.filters.get_by_label("Search errors and inputs")).to_have_value("ALICE")
    expect(monitor.rows).to_have_count(1)

    # A link with filters (as shared) opens that view; the search finds text in errors.
    monitor.open("status=failed&q=disk")
    expect(monitor.rows).to_have_count(1)
    expect(monitor.row(failed)).to_be_visible()
    expect(monitor.count("failed")).to_have_text("1")
    assert_accessible(page)
    screenshot(page, "executions-filtered")

    # A viewer, on a phone: the same monitor, no checkbox and no bulk action.
    create_user(database_url, VIEWER, "viewer")
    viewer = new_context(browser, dashboard)
    try:
        sign_in(viewer, VIEWER, VIEWER_PASSWORD)
        phone = viewer.new_page()
        phone.set_viewport_size(PHONE)
        monitor = ExecutionsPage(phone).open()
        expect(monitor.row(failed).locator(".badge")).to_have_text("failed")
        expect(monitor.count("failed")).to_have_text("1")
        expect(phone.get_by_role("checkbox", name=re.compile("^Select"))).to_have_count(0)
        expect(monitor.bulk).to_have_count(0)
        expect(phone.get_by_role("button", name=re.compile("all matching"))).to_have_count(0)
        assert_accessible(phone)
        screenshot(phone, "executions-phone")
    finally:
        viewer.close()
