"""The workflow page of a real ``conveyor server``: the Run button through its states, the
graph's nodes turning live, the results panel, a page opened while an execution runs
following it (and cancelling it from the button), the input editor and the form of a
declared input schema pre-filled with the last input, the diff between two versions, and a
failing workflow."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.e2e.dashboard.browser import PHONE, assert_accessible, screenshot
from tests.e2e.dashboard.conftest import conveyor_program, new_context, sign_in
from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key

WS = f"{API}/workspaces/{WORKSPACE}"
# A server start takes seconds, and much longer on a loaded CI machine: more than the
# default 60 s per test for setup and call together. The tests share the module's server, so
# each creates workflows and users of its own names.
pytestmark = pytest.mark.timeout(120)
VIEWER_PASSWORD = "e2e-viewer-password"

BRANCHING = {
    "name": "orders",
    "description": "Big orders wait for a moment; small ones go straight through.",
    "settings": {"retry": {"max_attempts": 2}, "concurrency": {"limit": 3}, "priority": 5},
    "nodes": [
        {
            "id": "start",
            "type": "transform",
            "config": {"output": {"amount": "{{ input.amount }}"}},
        },
        {
            "id": "check",
            "type": "condition",
            "name": "Is it big?",
            "needs": ["start"],
            "config": {"if": "{{ nodes.start.output.amount > 10 }}"},
        },
        {"id": "hold", "type": "wait", "needs": ["check.true"], "config": {"duration": "2s"}},
        {"id": "small", "type": "transform", "needs": ["check.false"], "config": {"output": {}}},
        {
            "id": "done",
            "type": "transform",
            "needs": ["hold"],
            "config": {"output": {"shipped": "{{ nodes.start.output.amount }}"}},
        },
    ],
}
LONG_WAIT = {
    "name": "slow",
    "nodes": [
        {"id": "first", "type": "transform", "config": {"output": {"blob": "{{ input.blob }}"}}},
        {"id": "nap", "type": "wait", "needs": ["first"], "config": {"duration": "10m"}},
    ],
}
FAILING = {
    "name": "breaks",
    "nodes": [
        {"id": "first", "type": "transform", "config": {"output": {"n": 1}}},
        {"id": "boom", "type": "fail", "needs": ["first"], "config": {"message": "it broke"}},
    ],
}


SIGNUP = {
    "name": "signup",
    "input": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {
                "type": "string",
                "title": "Customer name",
                "description": "As on the invoice",
            },
            "count": {"type": "integer", "minimum": 1, "default": 2},
            "size": {"enum": ["S", "M", "L"], "title": "Size", "default": "M"},
            "gift": {"type": "boolean", "title": "Gift wrap"},
        },
    },
    "nodes": [{"id": "echo", "type": "transform", "config": {"output": {"got": "{{ input }}"}}}],
}


@pytest.fixture
def client(dashboard: ServerProcess) -> Iterator[httpx.Client]:
    """The REST API as the admin (an API key), for arranging data."""
    headers = {"Authorization": f"Bearer {api_key(dashboard.base_url)}"}
    with httpx.Client(base_url=dashboard.base_url, headers=headers, timeout=10) as c:
        yield c


def create_viewer(database_url: str, who: str) -> str:
    """A user whose role in the default workspace is viewer (the CLI, as an operator would);
    their email, ``viewer-<who>@example.com`` (the tests of this module share a server)."""
    email = f"viewer-{who}@example.com"
    env = {**os.environ, "CONVEYOR_NEW_PASSWORD": VIEWER_PASSWORD}
    subprocess.run(
        [*conveyor_program(), "users", "create", email, "--role", "viewer"],
        env={**env, "CONVEYOR_DATABASE_URL": database_url},
        check=True,
        capture_output=True,
        timeout=60,
    )
    return email


def create(client: httpx.Client, definition: dict[str, Any]) -> None:
    response = client.post(f"{WS}/workflows", json={"definition": definition})
    assert response.status_code == 201, response.text


@dataclass
class WorkflowPage:
    """One workflow's page, found by role and label where there is one."""

    page: Page

    def open(self, name: str) -> WorkflowPage:
        self.page.goto(f"/w/{WORKSPACE}/workflows/{name}")
        expect(self.node("*").first).to_be_visible()
        # Record every text the Run button shows (a state can be shorter than a poll).
        self.page.evaluate(
            """() => {
              const button = document.getElementById('run-button');
              window.runStates = [button.textContent];
              new MutationObserver(() => window.runStates.push(button.textContent))
                .observe(button, {childList: true, subtree: true, characterData: true});
            }"""
        )
        return self

    @property
    def run_button(self) -> Locator:
        """The Run button, whatever it says now (Run, Queued…, Running… Cancel, 2.4s ✓)."""
        return self.page.locator("#run-button")

    @property
    def input(self) -> Locator:
        return self.page.get_by_label("Input (JSON)")

    def node(self, node_id: str) -> Locator:
        if node_id == "*":
            return self.page.locator("#workflow-graph g.node")
        return self.page.locator(f'#workflow-graph g.node[data-node-id="{node_id}"]')

    @property
    def results(self) -> Locator:
        return self.page.get_by_role("region", name="Results")

    def run(self, input_json: str | None = None) -> None:
        self.run_button.click()
        if input_json is not None:
            self.input.fill(input_json)
        self.page.get_by_role("button", name="Start execution").click()

    def states(self) -> list[str]:
        states: list[str] = self.page.evaluate("() => window.runStates")
        return states


def test_run_button_runs_the_workflow_and_the_graph_follows_it(
    page: Page, context: BrowserContext, client: httpx.Client
) -> None:
    create(client, BRANCHING)
    workflow = WorkflowPage(page).open("orders")
    expect(page.get_by_role("heading", name="orders", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Edit")).to_have_attribute(
        "href", "/w/default/workflows/orders/edit"
    )
    expect(workflow.node("*")).to_have_count(5)
    expect(workflow.run_button).to_have_text("Run")
    assert_accessible(page)

    workflow.run('{"amount": 25}')
    expect(workflow.run_button).to_be_focused()
    expect(workflow.run_button).to_contain_text("Running…")
    expect(page.get_by_role("button", name=re.compile("Cancel"))).to_be_enabled()
    expect(workflow.node("hold")).to_have_attribute("data-status", "waiting")
    expect(workflow.node("small")).to_have_attribute("data-status", "skipped")
    expect(page.locator("#run-status")).to_have_text("Running")
    screenshot(page, "workflow-running")

    expect(workflow.run_button).to_have_text(re.compile(r"^\d+\.\ds ✓$"))
    for node_id in ("start", "check", "hold", "done"):
        expect(workflow.node(node_id)).to_have_attribute("data-status", "succeeded")
    expect(workflow.node("small")).to_have_attribute("data-status", "skipped")
    states = workflow.states()
    assert "Queued…" in states and "Running…Cancel" in states, states
    assert states.index("Queued…") < states.index("Running…Cancel"), states
    expect(page.locator("#run-status")).to_contain_text("Succeeded in")

    results = workflow.results
    expect(results.locator(".results-banner")).to_contain_text("Succeeded")
    expect(results).to_contain_text("4 / 5")
    done = results.locator('details[data-node-id="done"]')
    done.locator("summary").click()
    expect(done.locator("pre")).to_contain_text('"shipped": 25')
    expect(results.get_by_role("link", name="Open the execution page")).to_have_attribute(
        "href", re.compile(r"^/w/default/executions/[0-9a-f]+$")
    )
    # The recent executions table and the statistics followed live.
    table = page.get_by_role("table", name=re.compile("Recent executions"))
    expect(table.get_by_role("row")).to_have_count(2)
    expect(table).to_contain_text("succeeded")
    expect(page.locator('[data-stat="executions"]')).to_have_text("1")
    expect(page.locator('[data-stat="success_rate"]')).to_have_text("100 %")
    # The settings tab shows the definition's settings, read-only.
    page.get_by_role("tab", name="Settings").click()
    expect(page.get_by_role("tabpanel", name="Settings")).to_contain_text("2 attempts")
    expect(page.get_by_role("tabpanel", name="Settings")).to_contain_text("3 running at once")
    results.scroll_into_view_if_needed()
    assert_accessible(page)
    screenshot(page, "workflow-results")

    # The next click brings Run back and opens the form with the input just used.
    workflow.run_button.click()
    expect(workflow.run_button).to_have_text("Run")
    expect(workflow.input).to_have_value(re.compile(r'"amount": 25'))

    phone = context.new_page()
    phone.set_viewport_size(PHONE)
    WorkflowPage(phone).open("orders")
    expect(phone.get_by_role("button", name="Run", exact=True)).to_be_visible()
    assert_accessible(phone)
    screenshot(phone, "workflow-phone")


def test_a_page_opened_while_an_execution_runs_follows_it_and_cancels_it(
    page: Page,
    client: httpx.Client,
    browser: Browser,
    dashboard: ServerProcess,
    database_url: str,
) -> None:
    create(client, LONG_WAIT)
    started = client.post(f"{WS}/workflows/slow/execute", json={"input": {"blob": "x" * 70_000}})
    assert started.status_code == 202, started.text
    execution_id = started.json()["execution_id"]
    page.goto(f"/w/{WORKSPACE}/workflows/slow")
    workflow = WorkflowPage(page)
    # Running… (or Queued… first) straight from the server, then the graph follows it.
    expect(workflow.run_button).to_contain_text(re.compile("Queued…|Running…"))
    expect(workflow.run_button).to_contain_text("Running…")
    expect(workflow.node("first")).to_have_attribute("data-status", "succeeded")
    expect(workflow.node("nap")).to_have_attribute("data-status", "waiting")
    # The page itself (before any script) starts in that state.
    html = page.request.get(f"/w/{WORKSPACE}/workflows/slow").text()
    assert 'data-state="running"' in html and "Running…" in html
    assert_accessible(page)
    screenshot(page, "workflow-following")

    # A viewer's graph follows it too, without a Run button to drive it.
    viewer_email = create_viewer(database_url, "following")
    viewer = new_context(browser, dashboard)
    try:
        sign_in(viewer, viewer_email, VIEWER_PASSWORD)
        tab = viewer.new_page()
        tab.goto(f"/w/{WORKSPACE}/workflows/slow")
        viewer_nap = WorkflowPage(tab).node("nap")
        expect(viewer_nap).to_have_attribute("data-status", "waiting")

        cancel = page.get_by_role("button", name=re.compile("Cancel"))
        expect(cancel).to_have_class(re.compile("danger"))
        cancel.click()
        expect(workflow.run_button).to_have_text("Cancelled")
        expect(viewer_nap).to_have_attribute("data-status", "cancelled")
    finally:
        viewer.close()
    assert client.get(f"{WS}/executions/{execution_id}").json()["status"] == "cancelled"
    expect(workflow.node("first")).to_have_attribute("data-status", "succeeded")
    expect(workflow.node("nap")).to_have_attribute("data-status", "cancelled")
    expect(workflow.results.locator(".results-banner")).to_contain_text("Cancelled")
    expect(page.locator("#run-status")).to_contain_text("Cancelled")
    # A large output: its first 20 KB, and where to read the whole value.
    first = workflow.results.locator('details[data-node-id="first"]')
    first.locator("summary").click()
    expect(first).to_contain_text("Showing the first 20 KB of 70 KB")
    expect(first.get_by_role("link", name=re.compile("full value"))).to_have_attribute(
        "href", re.compile(r"^/api/v1/workspaces/default/executions/[0-9a-f]+$")
    )
    page.emulate_media(color_scheme="dark")
    assert_accessible(page)
    screenshot(page, "workflow-dark")

    # An input too large to come with the page is read from the API when the form opens.
    WorkflowPage(page).open("slow").run_button.click()
    expect(workflow.run_button).to_have_text("Run")
    expect(workflow.input).to_have_value(re.compile('^{\n  "blob": "x{70000}"\n}$'))


def test_the_input_form_starts_from_the_last_input_and_shows_problems_at_the_field(
    page: Page, client: httpx.Client
) -> None:
    create(client, {**BRANCHING, "name": "orders-input"})  # its own executions only
    response = client.post(f"{WS}/workflows/orders-input/execute", json={"input": {"amount": 3}})
    assert response.status_code == 202, response.text
    workflow = WorkflowPage(page).open("orders-input")
    # The page follows that execution to its end (unless it ended before the page was made).
    expect(workflow.run_button).to_have_text(re.compile(r"^Run$|✓$"))
    workflow.run_button.click()
    expect(workflow.input).to_be_focused()
    expect(workflow.input).to_have_value('{\n  "amount": 3\n}')

    workflow.input.fill('{"amount": 3,')
    page.get_by_role("button", name="Start execution").click()
    expect(page.locator("#run-input-error")).to_contain_text("Not valid JSON")
    expect(workflow.input).to_have_attribute("aria-invalid", "true")
    expect(workflow.input).to_have_value('{"amount": 3,')
    expect(workflow.run_button).to_have_text("Run")
    assert_accessible(page)
    screenshot(page, "workflow-input-error")

    # The API's problem (413: over the input size limit) under the field, the text kept.
    too_big = json.dumps({"blob": "x" * 1_100_000})
    workflow.input.fill(too_big)
    page.get_by_role("button", name="Start execution").click()
    expect(page.locator("#run-input-error")).to_contain_text("CONVEYOR_MAX_INPUT_BYTES")
    assert page.evaluate("() => document.getElementById('run-input').value.length") == len(too_big)

    workflow.input.fill('{"amount": 4}')
    page.get_by_role("button", name="Start execution").click()
    expect(workflow.run_button).to_have_text(re.compile("✓$"))
    expect(workflow.node("small")).to_have_attribute("data-status", "succeeded")
    expect(workflow.node("hold")).to_have_attribute("data-status", "skipped")
    expect(
        page.get_by_role("table", name=re.compile("Recent executions")).get_by_role("row")
    ).to_have_count(3)


def test_a_declared_input_schema_gives_a_form_that_shows_the_apis_problems_at_the_field(
    page: Page, client: httpx.Client
) -> None:
    create(client, SIGNUP)
    workflow = WorkflowPage(page).open("signup")
    workflow.run_button.click()
    name, count = page.get_by_label("Customer name"), page.get_by_label("count", exact=True)
    expect(name).to_be_focused()
    expect(name).to_have_value("")
    expect(name).to_have_accessible_description(re.compile("As on the invoice"))
    expect(count).to_have_value("2")  # the schema's defaults
    expect(page.get_by_label("Size")).to_have_value("1")  # the index of "M"
    expect(page.get_by_label("Gift wrap")).not_to_be_checked()
    expect(workflow.input).to_have_count(0)

    # The page's own check: a whole number.
    name.fill("Ada")
    count.fill("2.5")
    page.get_by_role("button", name="Start execution").click()
    expect(page.locator("#input-count-error")).to_have_text("enter a whole number")
    # The API's check (422 invalid-input at input.count), shown at the field, nothing lost.
    count.fill("0")
    page.get_by_label("Size").select_option("L")
    page.get_by_role("button", name="Start execution").click()
    expect(page.locator("#input-count-error")).to_contain_text("minimum of 1")
    expect(count).to_have_attribute("aria-invalid", "true")
    expect(count).to_be_focused()
    expect(name).to_have_value("Ada")
    expect(page.get_by_label("Size")).to_have_value("2")
    expect(workflow.run_button).to_have_text("Run")
    assert_accessible(page)
    screenshot(page, "workflow-input-schema-error")

    count.fill("3")
    page.get_by_label("Gift wrap").check()
    page.get_by_role("button", name="Start execution").click()
    expect(workflow.run_button).to_have_text(re.compile("✓$"))
    latest = client.get(f"{WS}/workflows/signup/execute").json()
    assert latest["input"] == {"name": "Ada", "count": 3, "size": "L", "gift": True}

    # Opened again, the form starts from that input.
    WorkflowPage(page).open("signup").run_button.click()
    expect(name).to_have_value("Ada")
    expect(count).to_have_value("3")
    expect(page.get_by_label("Size")).to_have_value("2")
    expect(page.get_by_label("Gift wrap")).to_be_checked()


def test_the_versions_tab_shows_what_changed_between_two_versions(
    page: Page, client: httpx.Client
) -> None:
    original = {**BRANCHING, "name": "orders-versions"}  # its own versions only
    create(client, original)
    changed = json.loads(json.dumps(original))
    changed["nodes"][2]["config"]["duration"] = "5s"
    changed["nodes"].append(
        {"id": "notify", "type": "transform", "needs": ["done"], "config": {"output": {}}}
    )
    response = client.put(f"{WS}/workflows/orders-versions", json={"definition": changed})
    assert response.status_code == 200, response.text
    WorkflowPage(page).open("orders-versions")
    panel = page.get_by_role("tabpanel", name="Versions")
    # Previous -> latest, rendered by the server.
    expect(panel.get_by_label("From version")).to_have_value("1")
    expect(panel.get_by_label("To version")).to_have_value("2")
    summary = panel.get_by_role("list", name="Changes from v1 to v2")
    expect(summary).to_contain_text("Node hold changed: config")
    expect(summary).to_contain_text("Node notify added")
    expect(summary).to_contain_text("Edge done → notify added")
    diff = panel.get_by_role("region", name="Unified diff of the YAML")
    expect(diff.locator("del")).to_contain_text(["duration: 2s"])
    expect(diff.locator("ins").first).to_contain_text("added: +")
    expect(diff.locator("ins", has_text="duration: 5s")).to_have_count(1)
    expect(diff.locator("ins", has_text="id: notify")).to_have_count(1)
    assert_accessible(page)
    diff.scroll_into_view_if_needed()
    screenshot(page, "workflow-diff")

    # Another pair, swapped in by the script.
    panel.get_by_label("From version").select_option("2")
    panel.get_by_label("To version").select_option("1")
    summary = panel.get_by_role("list", name="Changes from v2 to v1")
    expect(summary).to_contain_text("Node notify removed")
    expect(diff.locator("ins", has_text="duration: 2s")).to_have_count(1)
    expect(page.locator("#diff-status")).to_have_text("Showing the changes from v2 to v1")
    page.emulate_media(color_scheme="dark")
    assert_accessible(page)
    screenshot(page, "workflow-diff-dark")

    # Without scripts the same pair comes from the page's own form (a plain GET).
    page.goto(f"/w/{WORKSPACE}/workflows/orders-versions?from=2&to=1")
    expect(page.get_by_role("list", name="Changes from v2 to v1")).to_be_visible()
    page.set_viewport_size(PHONE)
    page.get_by_role("region", name="Unified diff of the YAML").scroll_into_view_if_needed()
    screenshot(page, "workflow-diff-phone")


def test_a_failing_workflow_shows_failed_and_the_failed_node(
    page: Page,
    client: httpx.Client,
    browser: Browser,
    dashboard: ServerProcess,
    database_url: str,
) -> None:
    create(client, FAILING)
    workflow = WorkflowPage(page).open("breaks")
    workflow.run()
    expect(workflow.run_button).to_have_text("Failed")
    expect(workflow.run_button).to_have_class(re.compile("failed"))
    expect(workflow.node("boom")).to_have_attribute("data-status", "failed")
    expect(workflow.node("first")).to_have_attribute("data-status", "succeeded")
    banner = workflow.results.locator(".results-banner")
    expect(banner).to_contain_text("Failed")
    expect(banner).to_contain_text("it broke")
    expect(page.locator("#run-status")).to_contain_text("Failed: it broke")
    assert_accessible(page)
    screenshot(page, "workflow-failed")

    # Archived: the Run button says why it is disabled.
    page.get_by_role("button", name="Archive").click()
    expect(page.locator(".workflow-title .badge")).to_have_text("archived")
    expect(workflow.run_button).to_be_disabled()
    expect(page.get_by_text("The workflow is archived; activate it to run it.")).to_be_visible()
    expect(page.get_by_role("button", name="Activate")).to_be_visible()

    # A viewer sees the page but no control that changes anything.
    viewer_email = create_viewer(database_url, "failing")
    viewer = new_context(browser, dashboard)
    try:
        sign_in(viewer, viewer_email, VIEWER_PASSWORD)
        tab = viewer.new_page()
        WorkflowPage(tab).page.goto(f"/w/{WORKSPACE}/workflows/breaks")
        expect(tab.get_by_text("Viewers cannot run workflows")).to_be_visible()
        expect(tab.locator("#run-button")).to_have_count(0)
        expect(tab.get_by_role("button", name="Activate")).to_have_count(0)
        expect(tab.get_by_role("link", name="Edit")).to_have_count(0)
        expect(tab.get_by_role("table", name=re.compile("Recent executions"))).to_contain_text(
            "failed"
        )
        assert_accessible(tab)
    finally:
        viewer.close()
