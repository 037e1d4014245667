"""The inbox against a real ``conveyor server``: the badge in the navigation counts what
waits for the viewer and follows new notifications and tasks live (no reload); the inbox
page lists them with links to their executions, and its forms mark read and done."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from conveyor.store.accounts import csrf_token
from tests.e2e.dashboard.browser import assert_accessible, screenshot
from tests.e2e.dashboard.conftest import conveyor_program, new_context, sign_in
from tests.e2e.dashboard.pages import Layout
from tests.e2e.test_server import ServerProcess

pytestmark = [pytest.mark.timeout(120), pytest.mark.one_backend("postgres")]
WS = "inbox-e2e"  # a workspace of its own: the counts are this test's alone
EMAIL = "inbox-owner@example.com"
PASSWORD = "e2e-inbox-password"
DEFINITION = {
    "name": "onboard",
    "nodes": [
        {
            "id": "hello",
            "type": "notify",
            "config": {"title": "Welcome {{ input.who }}", "message": "Say hi at standup."},
        },
        {
            "id": "laptop",
            "type": "task.create",
            "needs": ["hello"],
            "config": {
                "title": "Order a laptop for {{ input.who }}",
                "assignee": EMAIL,
                "due_in": "3d",
            },
        },
    ],
}


def create_owner(database_url: str) -> None:
    """``conveyor users create`` (the workspace is created with it), as an operator would."""
    done = subprocess.run(
        [*conveyor_program(), "users", "create", EMAIL, "--workspace", WS, "--role", "owner"],
        env={
            **os.environ,
            "CONVEYOR_NEW_PASSWORD": PASSWORD,
            "CONVEYOR_DATABASE_URL": database_url,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


class OwnerApi:
    """The REST API as the workspace's owner (a session, with the CSRF header on writes)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=15)
        login = self.http.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
        assert login.status_code == 200, login.text
        session = self.http.cookies.get("conveyor_session")
        assert session
        self.http.headers["X-CSRF-Token"] = csrf_token(session)

    def call(self, method: str, path: str, status: int = 200, **options: Any) -> Any:
        response = self.http.request(method, f"/api/v1/workspaces/{WS}{path}", **options)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


@pytest.fixture
def owner(dashboard: ServerProcess) -> Iterator[OwnerApi]:
    create_owner(dashboard.database_url)
    client = OwnerApi(dashboard.base_url)
    yield client
    client.http.close()


@dataclass
class InboxPage(Layout):
    def open(self) -> InboxPage:
        self.page.goto(f"/w/{WS}/inbox")
        return self

    @property
    def badge(self) -> Locator:
        return self.page.locator("#inbox-link [data-inbox-count]")

    @property
    def notifications(self) -> Locator:
        return self.page.get_by_role("list", name="Notifications").get_by_role("listitem")

    def task_row(self, title: str) -> Locator:
        return self.page.locator("#task-list tbody tr").filter(has_text=title)


def test_the_badge_follows_new_items_live_and_the_page_marks_them(
    browser: Browser, dashboard: ServerProcess, owner: OwnerApi
) -> None:
    context = new_context(browser, dashboard)
    sign_in(context, EMAIL, PASSWORD)
    page: Page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    inbox = InboxPage(page)
    page.goto(f"/w/{WS}/workflows")
    expect(inbox.nav("Inbox")).to_be_visible()
    expect(inbox.badge).to_be_hidden()
    expect(page.locator("[data-live-status]")).to_have_attribute("data-live-status", "live")

    owner.call("POST", "/workflows", 201, json={"definition": DEFINITION})
    execution_id = owner.call(
        "POST", "/workflows/onboard/execute", 202, json={"input": {"who": "Ada"}}
    )["execution_id"]
    # No reload: the stream's notification.created and task.created events move the badge.
    expect(inbox.badge).to_have_text("2")
    expect(inbox.badge).to_be_visible()
    spoken = re.compile(r"^Inbox\s*2\s*\(1 unread, 1 open tasks for you\)$")
    expect(inbox.nav(spoken)).to_be_visible()

    inbox.nav(re.compile("^Inbox")).click()
    expect(page).to_have_url(re.compile(rf"/w/{WS}/inbox$"))
    expect(page.get_by_role("heading", name="Inbox", exact=True)).to_be_visible()
    expect(inbox.notifications).to_have_count(1)
    note = inbox.notifications.first
    expect(note).to_contain_text("Welcome Ada")
    expect(note).to_contain_text("Say hi at standup.")
    expect(note.get_by_role("link", name=re.compile("^onboard "))).to_have_attribute(
        "href", f"/w/{WS}/executions/{execution_id}"
    )
    row = inbox.task_row("Order a laptop for Ada")
    expect(row).to_contain_text(EMAIL)
    assert_accessible(page)
    screenshot(page, "inbox")

    page.get_by_role("button", name="Mark read: Welcome Ada").click()
    expect(page.get_by_text("No unread notifications.")).to_be_visible()
    expect(inbox.badge).to_have_text("1")
    page.get_by_role("link", name="All", exact=True).click()
    expect(inbox.notifications).to_have_count(1)
    expect(inbox.notifications.first.get_by_role("button")).to_have_count(0)

    page.get_by_role("button", name="Mark done: Order a laptop for Ada").click()
    expect(page.get_by_text("No open tasks for you.")).to_be_visible()
    expect(inbox.badge).to_be_hidden()
    page.get_by_role("link", name="Done", exact=True).click()
    expect(inbox.task_row("Order a laptop for Ada")).to_be_visible()
    (done,) = owner.call("GET", "/tasks", params={"status": "done"})
    assert done["done_by"] is not None and done["execution_id"] == execution_id
    page.get_by_role("button", name="Reopen: Order a laptop for Ada").click()
    expect(page.get_by_text("No tasks done yet.")).to_be_visible()
    expect(inbox.badge).to_have_text("1")
    assert_accessible(page)
    context.close()
    assert not errors, errors
