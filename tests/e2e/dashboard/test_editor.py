"""The workflow editor in Chromium against a real server: a mistake in the YAML shown at its
line and on its graph node, fixed on the canvas (palette, connect, config form), saved as a
version; a failed save keeps every edit; leaving with unsaved changes asks; viewers are
refused; the YAML the canvas writes reads back as the same data."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from tests.e2e.dashboard.browser import PHONE, assert_accessible, screenshot
from tests.e2e.dashboard.conftest import conveyor_program, new_context, sign_in
from tests.e2e.dashboard.pages import WorkflowsPage
from tests.e2e.dashboard.pages_editor import EditorPage
from tests.e2e.test_server import ADMIN_EMAIL, ADMIN_PASSWORD, API, ServerProcess

WS = f"{API}/workspaces/default"
# Line 9 needs a node that does not exist.
MISTAKE = """\
name: editor-e2e
nodes:
  - id: start
    type: transform
    config:
      output: {n: 1}
  - id: notify
    type: transform
    needs: [check.true]
    config:
      output: {ok: "{{ nodes.start.output.n }}"}
"""
WAIT = {"id": "a", "type": "wait", "config": {"duration": 1}}
UNKNOWN = "node 'notify', needs[0]: refers to unknown node 'check'"


@contextmanager
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    """The REST API as the admin: the session cookie and its CSRF token."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        admin = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        login = client.post(f"{API}/auth/login", json=admin)
        assert login.status_code == 200, login.text
        client.headers["X-CSRF-Token"] = login.json()["csrf_token"]
        yield client


@pytest.mark.timeout(150)  # the whole flow, two versions, on a loaded 2-core machine
def test_a_mistake_is_shown_at_its_line_and_node_then_fixed_on_the_canvas_and_saved(
    page: Page, context: BrowserContext, dashboard: ServerProcess
) -> None:
    WorkflowsPage(page).open()
    page.get_by_role("link", name="New workflow").click()
    editor = EditorPage(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("New workflow")
    expect(editor.state).to_contain_text("No changes")
    editor.type_yaml(MISTAKE)
    expect(editor.problems).to_have_count(1)
    expect(editor.problems.first).to_have_text(f"Line 9: {UNKNOWN}")
    expect(editor.line(9).locator(".cm-lintRange-error")).to_have_text("check.true]")
    expect(editor.node("notify")).to_have_attribute("data-problem", "true")
    expect(editor.node("notify").locator("title")).to_have_text(UNKNOWN)
    expect(editor.node("start")).not_to_have_attribute("data-problem", "true")
    assert_accessible(page)
    screenshot(page, "editor-problem")

    # Saving anyway: the API refuses, its problem is shown, nothing typed is lost.
    editor.save()
    expect(editor.save_error).to_contain_text("Not saved")
    expect(editor.save_error).to_contain_text("refers to unknown node 'check'")
    expect(editor.problems.first).to_have_text(f"Line 9: {UNKNOWN}")
    assert editor.yaml_text().startswith(MISTAKE.rstrip("\n"))
    expect(page).to_have_url(re.compile(r"/workflows/new/edit$"))

    # The fix, on the canvas: a condition from the palette, renamed, configured, connected.
    editor.add_node("cond", "Condition")
    expect(editor.node("condition_1")).to_be_visible()
    expect(editor.node_form.get_by_role("heading", name="Node condition_1")).to_be_visible()
    expect(editor.node_form.get_by_text("Templates allowed")).to_have_count(1)
    expect(editor.node_form).to_contain_text("Field required")  # its empty config, at 'if'
    editor.set_field("Id (required)", "check")
    expect(editor.node("check")).to_be_visible()
    editor.set_field("if (required)", "{{ nodes.start.output.n > 0 }}")
    editor.node("start").drag_to(editor.node("check"))  # connects: start has no branches
    expect(editor.node_form.get_by_label("Needs", exact=True)).to_have_value("start")
    expect(editor.no_problems).to_be_visible()
    expect(editor.problems).to_have_count(0)
    expect(editor.node("notify")).not_to_have_attribute("data-problem", "true")
    expect(editor.node("notify").locator("title")).to_have_text(
        "notify\nid: notify\ntype: transform"
    )
    expect(editor.edge("check", "notify")).to_have_attribute("data-branch", "true")
    text = editor.yaml_text()
    assert "  - id: check\n    type: condition\n" in text, text
    assert 'if: "{{ nodes.start.output.n > 0 }}"' in text, text

    # A branch chosen from the condition's labels, then that edge deleted again.
    editor.connect("check", "notify", branch="false")
    expect(editor.edge("check", "notify")).to_have_count(2)
    assert "check.false" in editor.yaml_text()
    page.get_by_role("button", name="Delete edge from check (false) to notify").click()
    expect(editor.edge("check", "notify")).to_have_count(1)
    expect(editor.no_problems).to_be_visible()
    assert_accessible(page)
    screenshot(page, "editor")

    editor.save()
    expect(page).to_have_url(re.compile(r"/w/default/workflows/editor-e2e$"))
    with api(dashboard) as client:
        saved = client.get(f"{WS}/workflows/editor-e2e").json()
    assert saved["latest_version"] == 1
    nodes = {n["id"]: n for n in saved["definition"]["nodes"]}
    assert nodes["check"]["config"] == {"if": "{{ nodes.start.output.n > 0 }}"}
    assert nodes["check"]["needs"] == ["start"]
    assert nodes["notify"]["needs"] == ["check.true"]
    expect(WorkflowsPage(page).open().row("editor-e2e")).to_contain_text("v1")

    # Editing it again stores version 2: a node deleted from the canvas.
    editor = EditorPage(page).open("editor-e2e")
    expect(page.get_by_role("heading", level=1)).to_have_text("Edit editor-e2e v1")
    editor.node("notify").click()
    editor.node_form.get_by_role("button", name="Delete node notify").click()
    expect(editor.node("notify")).to_have_count(0)
    expect(editor.no_problems).to_be_visible()
    editor.save()
    expect(page).to_have_url(re.compile(r"/w/default/workflows/editor-e2e$"))
    with api(dashboard) as client:
        saved = client.get(f"{WS}/workflows/editor-e2e").json()
    assert saved["latest_version"] == 2
    assert [n["id"] for n in saved["definition"]["nodes"]] == ["start", "check"]
    expect(WorkflowsPage(page).open().row("editor-e2e")).to_contain_text("v2")

    phone = context.new_page()
    phone.set_viewport_size(PHONE)
    EditorPage(phone).open("editor-e2e")
    expect(EditorPage(phone).node("check")).to_be_visible()
    assert_accessible(phone)
    screenshot(phone, "editor-phone")


SAMPLES: list[Any] = [
    {
        "strings": [
            "yes",
            "No",
            "on",
            "~",
            "null",
            "True",
            "",
            " lead",
            "trail ",
            "a: b",
            "a #b",
            "- x",
            "1.0",
            "0x1F",
            "1:20",
            "2024-01-01",
            ".inf",
            "<<",
            "é ü",
            "tab\there",
            "two\nlines\n",
            "two\nlines",
            "ends\n\n",
            " lead\nx",
            "cr\r\nx",
            "{{ input.x }}",
            "[a]",
            "a_b.c/d-e",
            "two words",
        ]
    },
    {"numbers": [0, -3, 1.5, 1e21, 1e-7, 123456789012], "flags": [True, False, None]},
    {
        "nested": [[1, [2]], [], {}, [{"a": {"b": [{"c": "d"}]}}]],
        "keys": {"with: colon": 1, "": 2, "123": 3, "true": 4, "-": 5},
    },
]


def test_a_refused_save_keeps_the_edits_and_leaving_unsaved_asks_first(
    page: Page, dashboard: ServerProcess
) -> None:
    with api(dashboard) as client:
        created = client.post(
            f"{WS}/workflows",
            json={"definition": {"name": "kept", "nodes": [WAIT]}},
        )
        assert created.status_code == 201, created.text
    editor = EditorPage(page).open("kept")
    the_yaml_the_canvas_writes_reads_back_as_the_same_data(page)
    assert editor.yaml_text().startswith("name: kept\nnodes:\n  - id: a\n    type: wait")
    editor.type_yaml(editor.yaml_text().replace("name: kept", "name: renamed"))
    expect(editor.state).to_contain_text("Unsaved changes")
    editor.save()
    expect(editor.save_error).to_contain_text("the definition's name must stay 'kept'")
    expect(editor.problems.first).to_have_text(
        "Line 1: name: the definition's name must stay 'kept'"
    )
    expect(editor.line(1).locator(".cm-lintRange-error")).to_be_visible()
    assert editor.yaml_text().startswith("name: renamed\n")

    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Workflows").click()
    expect(page).to_have_url(re.compile(r"/workflows/kept/edit$"))
    assert dialogs == ["beforeunload"]
    assert editor.yaml_text().startswith("name: renamed\n")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Workflows").click()
    expect(page).to_have_url(re.compile(r"/w/default/workflows$"))
    with api(dashboard) as client:
        assert client.get(f"{WS}/workflows/kept").json()["latest_version"] == 1

    # A new workflow does not quietly become the next version of one with its name.
    editor = EditorPage(page).open_new()
    editor.type_yaml("name: kept\nnodes:\n  - {id: b, type: wait, config: {duration: 2}}\n")
    editor.save()
    expect(editor.save_error).to_contain_text("a workflow named 'kept' exists already")
    expect(editor.problems.first).to_have_text(
        "Line 1: name: a workflow named 'kept' exists already"
    )
    with api(dashboard) as client:
        assert client.get(f"{WS}/workflows/kept").json()["latest_version"] == 1


def test_viewers_cannot_open_the_editor(
    browser: Browser, dashboard: ServerProcess, database_url: str
) -> None:
    env = {**os.environ, "CONVEYOR_NEW_PASSWORD": "viewer-password-1"}
    subprocess.run(
        [*conveyor_program(), "users", "create", "viewer@example.com", "--role", "viewer"],
        env={**env, "CONVEYOR_DATABASE_URL": database_url},
        check=True,
        capture_output=True,
        timeout=60,
    )
    with api(dashboard) as client:
        created = client.post(
            f"{WS}/workflows", json={"definition": {"name": "seen", "nodes": [WAIT]}}
        )
        assert created.status_code == 201, created.text
    context = new_context(browser, dashboard)
    try:
        sign_in(context, "viewer@example.com", "viewer-password-1")
        page = context.new_page()
        response = page.goto("/w/default/workflows/new/edit")
        assert response is not None and response.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        WorkflowsPage(page).open()
        expect(page.get_by_role("link", name="seen")).to_be_visible()
        expect(page.get_by_role("link", name="New workflow")).to_have_count(0)
    finally:
        context.close()


def the_yaml_the_canvas_writes_reads_back_as_the_same_data(page: Page) -> None:
    """Every sample, written by the editor's YAML writer, reads back (on the server) as itself."""
    texts = page.evaluate(
        "async (samples) => { const m = await import('/static/js/editor-yaml-text.js');"
        " return samples.map((s) => m.toYaml(s)); }",
        SAMPLES,
    )
    for sample, text in zip(SAMPLES, texts, strict=True):
        answer = page.request.post(
            f"{WS}/validate",
            data={"yaml": text},
            headers={
                "X-CSRF-Token": page.locator('meta[name="csrf-token"]').get_attribute("content")
                or ""
            },
        )
        assert answer.ok, answer.text()
        assert answer.json()["document"] == sample, text


def test_without_an_llm_the_describe_box_is_off_and_says_why(page: Page) -> None:
    EditorPage(page).open_new()
    box = page.get_by_role("region", name="Describe it")
    expect(box.get_by_label(re.compile("What should the workflow do"))).to_be_disabled()
    draft = box.get_by_role("button", name="Draft it")
    expect(draft).to_be_disabled()
    expect(draft).to_have_accessible_description(re.compile("no LLM is configured"))
    expect(box).to_contain_text("CONVEYOR_LLM_BASE_URL")
