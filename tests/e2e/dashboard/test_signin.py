"""Signing in to the dashboard of a real ``conveyor server``, and the workflows page."""

from __future__ import annotations

import re

from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.dashboard.browser import PHONE, assert_accessible, screenshot
from tests.e2e.dashboard.conftest import new_context
from tests.e2e.dashboard.pages import SignInPage, WorkflowsPage
from tests.e2e.test_server import ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess

WORKFLOW_YAML = """\
name: hello-dashboard
nodes:
  - id: greet
    type: transform
    config:
      output: {message: "hello {{ input.who }}"}
"""


def test_sign_in_wrong_password_and_unknown_email_read_the_same(
    browser: object, dashboard: ServerProcess
) -> None:
    context = new_context(browser, dashboard)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2F$"))
    signin = SignInPage(page)
    expect(signin.email).to_be_visible()
    assert_accessible(page)
    screenshot(page, "signin")

    signin.sign_in(ADMIN_EMAIL, "not the password")
    expect(signin.alert).to_have_text("Wrong email or password.")
    expect(signin.email).to_have_value(ADMIN_EMAIL)
    wrong_password = signin.alert.inner_text()
    signin.sign_in("nobody@example.com", "not the password")
    expect(signin.alert).to_have_text(wrong_password)

    signin.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(page).to_have_url(re.compile(r"/w/default/workflows$"))
    expect(page.get_by_role("heading", name="Workflows")).to_be_visible()
    context.close()


def test_the_workflows_page_creates_lists_and_pauses(page: Page, context: BrowserContext) -> None:
    workflows = WorkflowsPage(page).open()
    for name in ("Workflows", "Executions", "Statistics", "Settings"):
        expect(workflows.nav(name)).to_be_visible()
    expect(workflows.running).to_have_text("0")

    workflows.create("name: broken\nnodes:\n  - id: a\n    type: nope\n")
    expect(page.get_by_role("alert")).to_contain_text("nope")
    expect(page.get_by_label("Definition (YAML)")).to_have_value(re.compile("type: nope"))

    workflows.create(WORKFLOW_YAML)
    expect(page).to_have_url(re.compile(r"/w/default/workflows/hello-dashboard$"))
    workflows.open()
    row = workflows.row("hello-dashboard")
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Pause hello-dashboard").click()
    expect(workflows.row("hello-dashboard")).to_contain_text("paused")
    assert_accessible(page)
    screenshot(page, "workflows")

    phone = context.new_page()
    phone.set_viewport_size(PHONE)
    WorkflowsPage(phone).open()
    expect(phone.get_by_role("link", name="hello-dashboard")).to_be_visible()
    assert_accessible(phone)
    screenshot(phone, "workflows-phone")


def test_signing_out_ends_the_session(page: Page) -> None:
    workflows = WorkflowsPage(page).open()
    page.locator("details.user-menu summary").click()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/signin$"))
    workflows.open()
    expect(page).to_have_url(re.compile(r"/signin\?next="))
