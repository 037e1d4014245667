"""Live step messages, LLM steps and the palette's node reference in Chromium against a real
``conveyor server`` that loads the test node types of ``live_nodes``: a running step's
progress on its graph node and its streamed text in the results panel and in its step,
replaced by its stored output when it ends; an LLM step's prompt, response, model and
tokens; a node type's config fields and example in the editor's palette."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import fresh_database
from tests.e2e.dashboard.browser import assert_accessible, screenshot
from tests.e2e.dashboard.conftest import conveyor_program
from tests.e2e.dashboard.pages_editor import EditorPage
from tests.e2e.dashboard.pages_execution import ExecutionPage
from tests.e2e.dashboard.test_statistics_settings import AdminApi, admin_api
from tests.e2e.dashboard.test_workflow_page import WorkflowPage
from tests.e2e.test_server import ServerProcess

pytestmark = [pytest.mark.timeout(150), pytest.mark.one_backend("postgres")]
__all__ = ["admin_api"]  # the fixture, imported to be used here
CHUNKS = ["Hello", ", streamed ", "world"]


@pytest.fixture(scope="module")
def module_dashboard(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """This module's server also loads the live-message and LLM-shaped test node types."""
    folder = tmp_path_factory.mktemp(f"live-{backend}")
    with fresh_database(backend, folder) as database_url:
        process = ServerProcess(
            database_url,
            folder / "server.log",
            concurrency=8,
            program=conveyor_program(),
            args=(
                "--plugin",
                "tests.e2e.nodes",
                "--plugin",
                "tests.e2e.dashboard.live_nodes",
                "--allow-private-network",
            ),
        )
        try:
            process.wait_ready(within=30)
            yield process
        finally:
            process.close()


def streaming(name: str, folder: Path) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            {
                "id": "crawl",
                "type": "e2e.stream",
                "config": {
                    "total": 10,
                    "done": 3,
                    "message": "fetching page",
                    "chunks": CHUNKS,
                    "go_file": str(folder / "go"),
                    "release_file": str(folder / "release"),
                },
            },
            {"id": "after", "type": "transform", "needs": "crawl", "config": {"output": 1}},
        ],
    }


def test_the_workflow_page_shows_progress_on_the_node_and_streamed_text_in_the_results(
    page: Page, admin_api: AdminApi, tmp_path: Path
) -> None:
    admin_api.call("POST", "/workflows", 201, json={"definition": streaming("live-wf", tmp_path)})
    workflow = WorkflowPage(page).open("live-wf")
    workflow.run()
    node = workflow.node("crawl")
    expect(node).to_have_attribute("data-status", "running")
    expect(node).to_have_attribute("data-progress", "3/10")
    expect(node.locator(".node-status")).to_have_text("running · 3/10")
    expect(node.locator("title")).to_contain_text("fetching page 3")
    assert float(node.locator(".node-progress").get_attribute("width") or 0) > 0
    (tmp_path / "go").touch()  # the page follows the stream: now the text goes out
    live = workflow.results.locator('section.live-step[data-node-id="crawl"]')
    expect(live.locator("pre.live-text")).to_have_text("".join(CHUNKS))
    assert_accessible(page)
    screenshot(page, "workflow-live-progress")

    (tmp_path / "release").touch()
    expect(node).to_have_attribute("data-status", "succeeded")
    expect(node).not_to_have_attribute("data-progress", re.compile(".*"))
    assert float(node.locator(".node-progress").get_attribute("width") or 0) == 0
    expect(node.locator(".node-status")).to_have_text("succeeded")
    expect(workflow.run_button).to_have_text(re.compile("✓$"))
    # The stored output took the live text's place.
    expect(workflow.results.locator("section.live-step")).to_have_count(0)
    expect(workflow.results.locator('details.step-result[data-node-id="crawl"]')).to_contain_text(
        "Hello, streamed world"
    )
    screenshot(page, "workflow-live-finished")


def test_the_execution_page_shows_progress_and_streams_the_steps_text_until_it_ends(
    page: Page, admin_api: AdminApi, tmp_path: Path
) -> None:
    admin_api.call("POST", "/workflows", 201, json={"definition": streaming("live-ex", tmp_path)})
    execution_id = admin_api.execute("live-ex", {})
    execution = ExecutionPage(page).open(execution_id)
    node = execution.node("crawl")
    expect(node).to_have_attribute("data-progress", "3/10")
    expect(node).to_have_attribute("data-status", "running")
    (tmp_path / "go").touch()
    step = execution.step("crawl")
    live = step.get_by_role("region", name="Live output")
    expect(live).to_contain_text("Hello, streamed world")
    assert_accessible(page)
    screenshot(page, "execution-live-progress")
    live.scroll_into_view_if_needed()
    screenshot(page, "execution-live-text")

    (tmp_path / "release").touch()
    expect(execution.status).to_have_text("succeeded")
    expect(node).to_have_attribute("data-status", "succeeded")
    expect(node).not_to_have_attribute("data-progress", re.compile(".*"))
    expect(step.get_by_role("region", name="Live output")).to_have_count(0)
    expect(step.get_by_role("region", name=re.compile("^Output"))).to_contain_text("streamed")


LLM = {
    "name": "llm-steps",
    "nodes": [
        {
            "id": "ask",
            "type": "e2e.llm",
            "config": {
                "system": "You answer in one line.",
                "messages": [{"role": "user", "content": "Summarize {{ input.topic }}"}],
                "answer": "Durable execution keeps state across crashes.",
            },
        },
        {
            "id": "agent",
            "type": "e2e.llm",
            "needs": "ask",
            "config": {
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Plan it"}]}],
                "answer": "Done in two turns.",
                "turns": [
                    {"role": "assistant", "content": "Looking it up", "tool": "search"},
                    {"role": "tool", "content": {"hits": 3}},
                    "a bare entry",
                ],
            },
        },
    ],
}


def test_an_llm_step_shows_its_prompt_response_model_and_tokens(
    page: Page, admin_api: AdminApi
) -> None:
    admin_api.call("POST", "/workflows", 201, json={"definition": LLM})
    execution_id = admin_api.execute("llm-steps", {"topic": "Conveyor"})
    admin_api.until_finished([execution_id])
    execution = ExecutionPage(page).open(execution_id)
    expect(execution.status).to_have_text("succeeded")
    execution.node("ask").click()
    llm = execution.step("ask").locator("section.llm-part")
    expect(llm.locator(".llm-system")).to_contain_text("You answer in one line.")
    expect(llm.locator(".llm-user")).to_contain_text("Summarize Conveyor")
    answer = "Durable execution keeps state across crashes."
    expect(llm.locator(".llm-response")).to_have_text(answer)
    expect(llm.locator('[data-llm="model"]')).to_have_text("e2e-model-1")
    expect(llm.locator('[data-llm="input_tokens"]')).to_have_text("321")
    expect(llm.locator('[data-llm="output_tokens"]')).to_have_text("54")
    expect(llm.locator('[data-llm="cached_tokens"]')).to_have_text("7")
    expect(llm.locator('[data-llm="finish_reason"]')).to_have_text("stop")
    assert_accessible(page)
    screenshot(page, "execution-llm-step")

    execution.node("agent").click()
    agent = execution.step("agent").locator("section.llm-part")
    expect(agent.locator(".llm-user")).to_contain_text("Plan it")
    expect(agent.get_by_role("heading", name="Turns (3)")).to_be_visible()
    turns = agent.locator(".llm-block").filter(has_text="Turns").locator(".llm-message")
    expect(turns).to_have_count(3)
    expect(turns.nth(0)).to_contain_text("Looking it up")
    expect(turns.nth(0)).to_contain_text('"tool": "search"')
    expect(turns.nth(1)).to_contain_text('"hits": 3')
    expect(turns.nth(2)).to_contain_text("a bare entry")
    expect(agent.locator(".llm-response")).to_have_text("Done in two turns.")
    assert_accessible(page)


def test_the_palette_shows_each_node_types_fields_and_example(page: Page) -> None:
    editor = EditorPage(page).open_new()
    entry = page.locator("#palette-list li").filter(
        has=page.locator('button.palette-item[data-type="e2e.stream"]')
    )
    expect(entry.locator(".palette-description")).to_contain_text("Report")
    entry.get_by_text("Fields and example").click()
    fields = entry.get_by_role("list", name="Config fields of e2e.stream")
    release = fields.locator('li[data-field="release_file"]')
    expect(release).to_contain_text("string · required · template")
    expect(fields.locator('li[data-field="chunks"]')).to_contain_text("list of string")
    expect(fields.locator('li[data-field="total"]')).to_contain_text("integer · default 10")
    example = entry.get_by_label("Example e2e.stream node")
    expect(example).to_contain_text("type: e2e.stream")
    expect(example).to_contain_text("release_file")
    # Choosing the entry still adds a node.
    entry.get_by_role("button", name=re.compile("Add")).click()
    expect(editor.state).not_to_contain_text("No changes")
    entry.scroll_into_view_if_needed()
    assert_accessible(page)
    screenshot(page, "editor-palette-docs")

    # A built-in's entry: its fields and its example as YAML.
    page.get_by_label("Search node types").fill("http")
    http = page.locator("#palette-list li").filter(
        has=page.locator('button.palette-item[data-type="http.request"]')
    )
    http.get_by_text("Fields and example").click()
    expect(http.get_by_role("list", name="Config fields of http.request")).to_contain_text("url")
    expect(http.get_by_label("Example http.request node")).to_contain_text("type: http.request")
    http.get_by_label("Example http.request node").scroll_into_view_if_needed()
    assert_accessible(page)
    screenshot(page, "editor-palette-http")
