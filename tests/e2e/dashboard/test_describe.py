"""The editor's "Describe it" box in Chromium against a real server whose LLM is a local
OpenAI-compatible server with scripted answers: a bad draft goes back with its problems, the
repaired one fills the graph and the YAML unsaved (the workflow's version does not move)
until Save; a draft that stays invalid shows what is still wrong and saves nothing."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.dashboard.browser import assert_accessible, screenshot
from tests.e2e.dashboard.conftest import started_dashboard
from tests.e2e.dashboard.pages_editor import EditorPage
from tests.e2e.dashboard.test_editor import WS, api
from tests.e2e.test_server import ServerProcess
from tests.integration.llmserver import LLMRequest, LLMServer, Reply
from tests.integration.test_generate import BAD, GOOD

GREET = "Greet someone by name, then add an exclamation mark"
WRONG = "Something the model never gets right"
THINKING = threading.Event()  # the first answer to GREET waits for it (set: no wait)
THINKING.set()

pytestmark = pytest.mark.one_backend("sqlite")


def answer(request: LLMRequest) -> Reply:
    """The first draft of any description is bad; a repair of GREET is good, of WRONG not."""
    description = request.messages[1]["content"]
    first = len(request.messages) == 2
    if description == GREET and first:
        THINKING.wait(60)
    return Reply(GOOD if description == GREET and not first else BAD)


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMServer]:
    server = LLMServer()
    server.responder = answer
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def module_dashboard(
    backend: str, tmp_path_factory: pytest.TempPathFactory, llm: LLMServer
) -> Iterator[ServerProcess]:
    """This module's server drafts with ``llm`` (overrides the conftest's plain one)."""
    env = {
        "CONVEYOR_LLM_BASE_URL": llm.base_url,
        "CONVEYOR_LLM_MODEL": "drafter",
        "CONVEYOR_LLM_API_KEY": "sk-e2e",
        "CONVEYOR_ALLOW_PRIVATE_NETWORK": "true",
    }
    folder: Path = tmp_path_factory.mktemp(f"describe-{backend}")
    with started_dashboard(backend, folder, env) as server:
        yield server


def latest_version(server: ServerProcess, name: str) -> int:
    with api(server) as client:
        answer = client.get(f"{WS}/workflows/{name}")
        assert answer.status_code == 200, answer.text
        return int(answer.json()["latest_version"])


@pytest.mark.timeout(150)
def test_a_draft_fills_the_graph_and_yaml_unsaved_until_save(
    page: Page, dashboard: ServerProcess, llm: LLMServer, backend: str
) -> None:
    name = f"described-{backend}"
    with api(dashboard) as client:
        first = {"name": name, "nodes": [{"id": "old", "type": "wait", "config": {"duration": 1}}]}
        created = client.post(f"{WS}/workflows", json={"definition": first})
        assert created.status_code in (200, 201), created.text
    asked = len(llm.requests)

    editor = EditorPage(page).open(name)
    box = page.get_by_role("region", name="Describe it")
    box.get_by_label(re.compile("What should the workflow do")).fill(GREET)
    THINKING.clear()
    try:
        box.get_by_role("button", name="Draft it").click()
        # While the LLM thinks: a spinner, a live status, no second request.
        expect(box.get_by_role("status")).to_have_text("Drafting… the LLM can take a minute.")
        expect(box.locator(".spinner")).to_be_visible()
        expect(box.get_by_role("button", name="Draft it")).to_be_disabled()
        expect(page.locator("#describe-form")).to_have_attribute("aria-busy", "true")
    finally:
        THINKING.set()
    status = box.get_by_role("status")
    expect(status).to_have_text(
        "Drafted in 2 attempts. Not saved yet: check the graph and the YAML, then Save."
    )
    expect(editor.node("hello")).to_be_visible()
    expect(editor.node("after")).to_be_visible()
    expect(editor.node("old")).to_have_count(0)
    expect(editor.edge("hello", "after")).to_have_count(1)
    expect(editor.no_problems).to_be_visible()
    expect(editor.state).to_contain_text("Unsaved changes")
    text = editor.yaml_text()
    assert f"name: {name}" in text and "hello {{ input.name }}" in text, text
    assert len(llm.requests) - asked == 2
    repair = llm.requests[-1]
    assert "transfrom" in repair.messages[-1]["content"]
    assert repair.header("authorization") == "Bearer sk-e2e"
    assert latest_version(dashboard, name) == 1  # drafted, not saved
    assert_accessible(page)
    screenshot(page, "editor-describe")

    editor.save()
    expect(page).to_have_url(re.compile(rf"/w/default/workflows/{name}$"))
    assert latest_version(dashboard, name) == 2
    with api(dashboard) as client:
        saved = client.get(f"{WS}/workflows/{name}").json()
    assert [n["id"] for n in saved["definition"]["nodes"]] == ["hello", "after"]


@pytest.mark.timeout(150)
def test_a_draft_still_invalid_shows_its_problems_and_saves_nothing(
    page: Page, dashboard: ServerProcess
) -> None:
    editor = EditorPage(page).open_new()
    box = page.get_by_role("region", name="Describe it")
    box.get_by_label(re.compile("What should the workflow do")).fill(WRONG)
    box.get_by_role("button", name="Draft it").click()
    expect(box.get_by_role("status")).to_contain_text(
        "Drafted in 3 attempts, but 2 problems remain"
    )
    remaining = box.get_by_role("list", name="Problems the draft still has").get_by_role("listitem")
    expect(remaining).to_have_count(2)
    expect(remaining.first).to_contain_text("transfrom")
    expect(editor.problems).to_have_count(2)
    expect(editor.node("hello")).to_have_attribute("data-problem", "true")
    expect(box.get_by_role("button", name="Draft it")).to_be_enabled()
    assert "type: transfrom" in editor.yaml_text()
    assert_accessible(page)
    screenshot(page, "editor-describe-problems")
    with api(dashboard) as client:
        assert client.get(f"{WS}/workflows/greet").status_code == 404
