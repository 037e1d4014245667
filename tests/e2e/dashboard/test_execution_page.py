"""The execution page of a real ``conveyor server``: a failed execution shows its failed node
and error, is retried from the page (and fails again, as its input says), then replayed from
a node with edited input (and succeeds, reusing what came before); a waiting execution is
paused, resumed and signalled from the page and finishes live; another is cancelled."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.dashboard.browser import DESKTOP, PHONE, SCREENSHOTS, assert_accessible, screenshot
from tests.e2e.dashboard.conftest import (
    EXPECT_TIMEOUT_MS,
    conveyor_program,
    new_context,
    sign_in,
)
from tests.e2e.dashboard.pages_execution import ExecutionPage
from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key

# A server start and several page loads each: generous for a loaded 2-core machine.
pytestmark = pytest.mark.timeout(120)

VIEWER_EMAIL = "viewer@example.com"
VIEWER_PASSWORD = "e2e-viewer-password"

BRANCHING = {
    "name": "exec-branching",
    "nodes": [
        {
            "id": "fetch",
            "type": "transform",
            "config": {"output": {"source": "fixed", "payload": "{{ input }}"}},
        },
        {
            "id": "check",
            "type": "transform",
            "needs": ["fetch"],
            "config": {"output": {"ok": "{{ input.ok }}", "n": "{{ input.n }}"}},
        },
        {"id": "gate", "type": "condition", "needs": ["check"], "config": {"if": "{{ input.ok }}"}},
        {
            "id": "boom",
            "type": "fail",
            "needs": ["gate.false"],
            "config": {"message": "input.ok is not true"},
        },
        {
            "id": "done",
            "type": "transform",
            "needs": ["gate.true"],
            "config": {"output": {"n": "{{ nodes.check.output.n }}"}},
        },
    ],
}
SHAKY = {
    "name": "exec-shaky",
    "nodes": [
        {
            "id": "shaky",
            "type": "fail",
            "config": {"message": "still down", "non_retryable": False},
            "retry": {"max_attempts": 2, "initial_interval": "1s"},
        }
    ],
}
APPROVAL = {
    "name": "exec-approval",
    "nodes": [
        {"id": "prepare", "type": "transform", "config": {"output": {"ready": True}}},
        {
            "id": "approve",
            "type": "wait_for_event",
            "needs": ["prepare"],
            "config": {"event": "approved"},
        },
        {
            "id": "after",
            "type": "transform",
            "needs": ["approve"],
            "config": {"output": {"by": "{{ nodes.approve.output.by }}"}},
        },
    ],
}


def add_viewer(database_url: str) -> subprocess.Popen[bytes]:
    """Start making a viewer of the default workspace with the CLI, as an administrator
    would (it runs while the test goes on; wait for it before signing in)."""
    environment = {**os.environ, "CONVEYOR_NEW_PASSWORD": VIEWER_PASSWORD}
    command = ["users", "create", VIEWER_EMAIL, "--role=viewer", f"--database={database_url}"]
    return subprocess.Popen(
        [*conveyor_program(), *command],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture(autouse=True)
def patient_expect() -> None:
    """``expect`` waits 5 s by default (the context's timeout covers actions only)."""
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture
def client(dashboard: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {api_key(dashboard.base_url)}"}
    with httpx.Client(base_url=dashboard.base_url, headers=headers, timeout=10) as http:
        yield http


def start(client: httpx.Client, workflow: dict[str, Any], payload: Any) -> str:
    ws = f"{API}/workspaces/{WORKSPACE}"
    applied = client.post(f"{ws}/workflows", json={"definition": workflow})
    assert applied.status_code in (200, 201), applied.text
    started = client.post(f"{ws}/workflows/{workflow['name']}/execute", json={"input": payload})
    assert started.status_code == 202, started.text
    return str(started.json()["execution_id"])


def detail(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    found = client.get(f"{API}/workspaces/{WORKSPACE}/executions/{execution_id}")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def steps_of(execution: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["node_id"]: s for s in execution["steps"]}


def test_a_failed_execution_is_retried_then_replayed_with_edited_input(
    page: Page, client: httpx.Client
) -> None:
    shaky = start(client, SHAKY, {})
    first = start(client, BRANCHING, {"ok": False, "n": 1, "items": list(range(20_000))})
    view = ExecutionPage(page).open(first)
    expect(view.status).to_have_text("failed")
    expect(view.node("boom")).to_have_attribute("data-status", "failed")
    expect(view.node("done")).to_have_attribute("data-status", "skipped")
    expect(view.error).to_contain_text("input.ok is not true")
    expect(view.error).to_contain_text("boom")
    assert_accessible(page)
    screenshot(page, "execution-failed")
    # A payload over the API's summary limit is left to its download.
    view.node("fetch").click()
    output = view.step("fetch").get_by_role("region", name="Output")
    expect(output).to_contain_text("Too large to show here")
    with page.expect_download() as download:
        output.get_by_role("link", name="Download output of fetch (the full value)").click()
    assert download.value.suggested_filename == f"{first}-fetch-1-output.json"

    view.action("Retry from the failed step").click()
    expect(page).not_to_have_url(re.compile(first))
    retried = view.current_id()
    expect(view.status).to_have_text("failed")
    expect(view.relations).to_contain_text(f"Retry of execution {first[:8]}")
    expect(view.node("fetch")).to_have_attribute("data-status", "succeeded")
    assert detail(client, retried)["trigger_type"] == "retry"

    view.action("Replay…").click()
    dialog = page.get_by_role("dialog", name="Replay from a node")
    dialog.get_by_label("From node").select_option("check")
    field = dialog.get_by_label("Input (JSON)")
    field.fill('{"ok": true, "n": 2')
    dialog.get_by_role("button", name="Replay").click()
    expect(dialog.get_by_text("Not valid JSON")).to_be_visible()
    expect(field).to_have_value('{"ok": true, "n": 2')  # nothing typed is lost
    field.fill('{"ok": true, "n": 2}')
    dialog.get_by_role("button", name="Replay").click()
    expect(page).not_to_have_url(re.compile(retried))
    expect(view.status).to_have_text("succeeded")
    expect(view.node("done")).to_have_attribute("data-status", "succeeded")
    expect(view.node("boom")).to_have_attribute("data-status", "skipped")

    replayed = steps_of(detail(client, view.current_id()))
    assert replayed["check"]["output"] == {"ok": True, "n": 2}
    assert replayed["done"]["output"] == {"n": 2}
    # fetch was not run again: its output was reused from the execution replayed.
    assert "output reused from execution" in replayed["fetch"]["logs"][0]["message"]
    assert_accessible(page)
    screenshot(page, "execution-succeeded")
    page.screenshot(path=SCREENSHOTS / "execution-succeeded-full.png", full_page=True)
    page.set_viewport_size(PHONE)
    expect(view.status).to_be_visible()
    assert_accessible(page)
    screenshot(page, "execution-phone")
    page.screenshot(path=SCREENSHOTS / "execution-phone-full.png", full_page=True)

    # Retries: the node shows its attempt; the timeline a bar per attempt and the backoff.
    page.set_viewport_size(DESKTOP)
    view.open(shaky)
    expect(view.node("shaky")).to_have_attribute("data-status", "failed")
    expect(view.node("shaky")).to_contain_text("attempt 2")
    row = view.timeline.locator('.timeline-row[data-node-id="shaky"]')
    expect(row.locator(".bar.run")).to_have_count(2)
    expect(row.locator(".bar.wait")).to_have_count(1)
    expect(view.step("shaky")).to_contain_text("2 attempts")


def test_a_waiting_execution_is_paused_resumed_and_signalled_live_and_another_cancelled(
    page: Page, client: httpx.Client, browser: Browser, dashboard: ServerProcess, database_url: str
) -> None:
    making_viewer = add_viewer(database_url)
    waiting = start(client, APPROVAL, {})
    view = ExecutionPage(page).open(waiting)
    expect(view.node("approve")).to_have_attribute("data-status", "waiting")
    expect(view.status).to_have_text("waiting")
    expect(view.blocked).to_contain_text("waiting for signal approved")
    page.evaluate("window.notReloaded = true")

    view.action("Pause").click()
    expect(view.action("Resume")).to_be_visible()
    expect(view.blocked).to_contain_text("paused")
    view.action("Resume").click()
    expect(view.action("Pause")).to_be_visible()
    assert_accessible(page)
    screenshot(page, "execution-waiting")

    view.action("Send signal…").click()
    dialog = page.get_by_role("dialog", name="Send a signal")
    name = dialog.get_by_label("Signal name")
    expect(name).to_have_value("approved")
    # The API's refusal is shown at the field it concerns.
    name.fill("child:forged")
    dialog.get_by_role("button", name="Send signal").click()
    expect(dialog.locator("#signal-name-error")).to_contain_text("does not start with 'child:'")
    expect(name).to_have_attribute("aria-invalid", "true")
    name.fill("approved")
    data = dialog.get_by_label("Data (JSON)")
    data.fill("{by: alice}")
    dialog.get_by_role("button", name="Send signal").click()
    expect(dialog.get_by_text("Not valid JSON")).to_be_visible()
    expect(data).to_have_value("{by: alice}")
    data.fill(json.dumps({"by": "alice", "items": list(range(3000))}))
    dialog.get_by_role("button", name="Send signal").click()
    expect(view.node("after")).to_have_attribute("data-status", "succeeded")
    expect(view.status).to_have_text("succeeded")
    assert page.evaluate("window.notReloaded") is True  # live, not reloaded
    # The timeline shows the wait, and the same attempts as a table.
    waits = view.timeline.locator('.timeline-row[data-node-id="approve"] .bar.wait')
    expect(waits).to_have_count(1)
    page.get_by_role("button", name="Show as table").click()
    expect(page.get_by_role("row", name=re.compile(r"^approve 1 succeeded"))).to_be_visible()
    assert steps_of(detail(client, waiting))["after"]["output"]["by"] == "alice"
    # A big value opens truncated, with the whole value as a download.
    view.node("approve").click()
    output = view.step("approve").get_by_role("region", name="Output")
    expect(output.get_by_text(re.compile(r"\d+ more not shown"))).to_be_visible()
    with page.expect_download() as download:
        output.get_by_role("link", name="Download the full value", exact=True).click()
    assert download.value.suggested_filename == f"{waiting}-approve-1-output.json"

    doomed = start(client, APPROVAL, {})
    view.open(doomed)
    expect(view.status).to_have_text("waiting")
    view.action("Cancel execution").click()
    expect(view.status).to_have_text("cancelled")
    expect(view.action("Retry from the failed step")).to_be_visible()
    expect(view.action("Cancel execution")).to_be_hidden()
    assert_accessible(page)
    screenshot(page, "execution-cancelled")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "execution-cancelled-dark")

    # A viewer sees the execution and no control; the server refuses them anyway.
    viewer = new_context(browser, dashboard)
    try:
        _, errors = making_viewer.communicate(timeout=60)
        assert making_viewer.returncode == 0, errors.decode()
        sign_in(viewer, VIEWER_EMAIL, VIEWER_PASSWORD)
        their = ExecutionPage(viewer.new_page()).open(doomed)
        expect(their.status).to_have_text("cancelled")
        expect(their.page.get_by_role("group", name="Execution actions")).to_have_count(0)
        expect(their.page.get_by_role("button", name=re.compile("Retry|Replay"))).to_have_count(0)
        refused = viewer.request.post(f"{API}/workspaces/{WORKSPACE}/executions/{doomed}/retry")
        assert refused.status == 403, refused.text()
    finally:
        viewer.close()
