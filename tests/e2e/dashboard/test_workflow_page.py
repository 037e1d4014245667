"""The workflow page of a real ``conveyor server``: the Run button through its states, the
graph's nodes turning live, the results panel, cancelling from the button, the input editor
pre-filled with the last input, and a failing workflow."""

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
# default 60 s per test for setup and call together.
pytestmark = pytest.mark.timeout(120)
VIEWER_EMAIL = "viewer@example.com"
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


SCHEMA = {
    "type": "object",
    "required": ["name", "size"],
    "properties": {
        "name": {"type": "string", "title": "Customer name", "description": "As on the invoice"},
        "size": {"enum": ["S", "M", "L"], "title": "Size"},
        "count": {"type": "integer", "default": 2},
        "gift": {"type": "boolean", "title": "Gift wrap"},
    },
}


@pytest.fixture
def client(dashboard: ServerProcess) -> Iterator[httpx.Client]:
    """The REST API as the admin (an API key), for arranging data."""
    headers = {"Authorization": f"Bearer {api_key(dashboard.base_url)}"}
    with httpx.Client(base_url=dashboard.base_url, headers=headers, timeout=10) as c:
        yield c


def create_viewer(database_url: str) -> None:
    """A user whose role in the default workspace is viewer (the CLI, as an operator would)."""
    env = {**os.environ, "CONVEYOR_NEW_PASSWORD": VIEWER_PASSWORD}
    subprocess.run(
        [*conveyor_program(), "users", "create", VIEWER_EMAIL, "--role", "viewer"],
        env={**env, "CONVEYOR_DATABASE_URL": database_url},
        check=True,
        capture_output=True,
        timeout=60,
    )


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


def test_cancel_from_the_run_button(page: Page, client: httpx.Client) -> None:
    create(client, LONG_WAIT)
    workflow = WorkflowPage(page).open("slow")
    workflow.run(json.dumps({"blob": "x" * 70_000}))
    expect(workflow.node("nap")).to_have_attribute("data-status", "waiting")
    cancel = page.get_by_role("button", name=re.compile("Cancel"))
    expect(cancel).to_have_class(re.compile("danger"))
    cancel.click()
    expect(workflow.run_button).to_have_text("Cancelled")
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
    expect(workflow.input).to_have_value(re.compile('^{\n  "blob": "x{70000}"\n}$'))


def test_the_input_form_starts_from_the_last_input_and_shows_problems_at_the_field(
    page: Page, client: httpx.Client
) -> None:
    create(client, BRANCHING)
    response = client.post(f"{WS}/workflows/orders/execute", json={"input": {"amount": 3}})
    assert response.status_code == 202, response.text
    workflow = WorkflowPage(page).open("orders")
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

    # A declared input schema (``input:`` in a definition, which arrives with another branch)
    # gives labelled fields instead: the module the Run panel uses, built into this page.
    page.evaluate(
        """async (schema) => {
          const { inputForm } = await import('/static/js/workflow-input.js');
          const fields = document.createElement('div');
          const error = document.createElement('p');
          error.hidden = true;
          document.querySelector('main').append(fields, error);
          window.schemaForm = inputForm(fields, schema, {name: 'Ada', size: 'M'}, error);
        }""",
        SCHEMA,
    )
    expect(page.get_by_label("Customer name")).to_have_value("Ada")
    expect(page.get_by_label("Customer name")).to_have_accessible_description(
        re.compile("As on the invoice")
    )
    expect(page.get_by_label("Size")).to_have_value("1")  # the index of "M"
    expect(page.get_by_label("count", exact=True)).to_have_value("2")  # the schema's default
    expect(page.get_by_label("Gift wrap")).not_to_be_checked()

    page.get_by_label("count", exact=True).fill("2.5")
    assert page.evaluate("() => window.schemaForm.read().ok") is False
    expect(page.locator("#input-count-error")).to_have_text("enter a whole number")
    expect(page.get_by_label("count", exact=True)).to_have_attribute("aria-invalid", "true")

    page.get_by_label("count", exact=True).fill("3")
    page.get_by_label("Gift wrap").check()
    read = page.evaluate("() => window.schemaForm.read()")
    assert read == {"ok": True, "value": {"name": "Ada", "size": "M", "count": 3, "gift": True}}

    # A 422 from the API: each problem at its field, the typed values kept.
    page.evaluate(
        """() => window.schemaForm.showProblems(
             [{path: 'input.name', message: 'should be longer'}], 'invalid')"""
    )
    expect(page.locator("#input-name-error")).to_have_text("should be longer")
    expect(page.get_by_label("Customer name")).to_be_focused()
    expect(page.get_by_label("count", exact=True)).to_have_value("3")
    assert_accessible(page)


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
    create_viewer(database_url)
    viewer = new_context(browser, dashboard)
    try:
        sign_in(viewer, VIEWER_EMAIL, VIEWER_PASSWORD)
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
