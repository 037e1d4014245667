"""The credentials page against a real ``conveyor server``: a credential created from its
type's form, shown with its non-secret fields and the workflows that use it, replaced and
deleted (the confirmation names those workflows); problems shown at their field; a viewer
sees the list only and is refused; and no secret value ever appears in any page's HTML."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.e2e.dashboard.browser import PHONE, assert_accessible, screenshot
from tests.e2e.dashboard.conftest import new_context, sign_in
from tests.e2e.dashboard.pages import Layout
from tests.e2e.dashboard.test_statistics_settings import (
    PASSWORD,
    STATE_CHANGING,
    AdminApi,
    admin_api,
    create_user,
)
from tests.e2e.test_server import ServerProcess

pytestmark = [pytest.mark.timeout(150), pytest.mark.one_backend("sqlite")]
__all__ = ["admin_api"]  # the fixture, imported to be used here
WS = "default"
CANARY = "canary-token-9f2c4e1a77"
CANARY_2 = "canary-password-5d3b8e06"
CANARY_3 = "canary-replaced-b81c33f4"
USES = {
    "name": "uses-canary",
    "nodes": [
        {
            "id": "call",
            "type": "transform",
            "config": {"output": {"auth": "Bearer {{ secrets.canary_api }}", "ok": True}},
        }
    ],
}


@dataclass
class CredentialsPage(Layout):
    def open(self) -> CredentialsPage:
        self.page.goto(f"/w/{WS}/credentials")
        return self

    def row(self, name: str) -> Locator:
        return self.page.locator(f'#credential-list tr[data-credential="{name}"]')

    def new(self, type_title: str) -> None:
        self.page.get_by_role("link", name="New credential").click()
        self.page.get_by_role("link", name=re.compile(f"^{type_title}")).click()


def field(page: Page, label: str) -> Locator:
    """A form control by its label's first word ("Password" for "Password (secret)")."""
    return page.get_by_label(re.compile(rf"^{label}\b"))


def html_of_every_page(context: BrowserContext, execution_id: str, names: list[str]) -> str:
    """The HTML every page of the workspace answers with, as the server sent it."""
    paths = [
        "workflows",
        "workflows/uses-canary",
        "workflows/uses-canary/edit",
        "executions",
        f"executions/{execution_id}",
        "statistics",
        "settings",
        "credentials",
        "credentials/new?type=bearer",
        "credentials/new?type=basic",
        *[f"credentials/{n}/edit" for n in names],
    ]
    texts = []
    for path in paths:
        answer = context.request.get(f"/w/{WS}/{path}")
        assert answer.status == 200, (path, answer.status)
        texts.append(answer.text())
    return "\n".join(texts)


def test_a_credential_is_created_replaced_and_deleted_and_its_value_never_rendered(
    page: Page, context: BrowserContext, admin_api: AdminApi
) -> None:
    admin_api.call("POST", "/workflows", 201, json={"definition": USES})
    creds = CredentialsPage(page).open()
    expect(creds.nav("Credentials")).to_have_attribute("aria-current", "page")
    for link in ("Workflows", "Executions", "Statistics", "Settings"):
        expect(creds.nav(link)).to_be_visible()

    # A bearer token: the form is the type's fields; the secret is a password input.
    creds.new("Bearer token")
    expect(page.get_by_role("heading", level=1)).to_have_text("New Bearer token")
    token = field(page, "Token")
    expect(token).to_have_attribute("type", "password")
    expect(token).to_have_attribute("autocomplete", "new-password")
    field(page, "Name").fill("canary_api")
    page.get_by_role("button", name="Create credential").click()
    expect(page.locator("#field-token-error")).to_contain_text("needs 'token'")
    expect(field(page, "Name")).to_have_value("canary_api")
    assert_accessible(page)
    screenshot(page, "credentials-form-error")
    field(page, "Token").fill(CANARY)
    field(page, "Description").fill("the partner API")
    page.get_by_role("button", name="Create credential").click()
    expect(page.get_by_role("status").filter(has_text="Credential created.")).to_be_visible()
    row = creds.row("canary_api")
    expect(row).to_contain_text("Bearer token")
    expect(row).to_contain_text("the partner API")
    expect(row).to_contain_text(re.compile(r"token\s*:?\s*set"))
    expect(row.get_by_role("link", name="uses-canary")).to_have_attribute(
        "href", f"/w/{WS}/workflows/uses-canary"
    )

    # The same name again: refused at the name field.
    creds.new("Bearer token")
    field(page, "Name").fill("canary_api")
    field(page, "Token").fill(CANARY_3)
    page.get_by_role("button", name="Create credential").click()
    expect(page.locator("#cred-name-error")).to_contain_text("already exists")
    expect(field(page, "Token")).to_have_value("")  # never echoed back

    # Basic auth: the username is listed, the password is not.
    creds.open().new("Basic auth")
    field(page, "Name").fill("partner-basic")
    field(page, "Username").fill("svc-partner")
    field(page, "Password").fill(CANARY_2)
    page.get_by_role("button", name="Create credential").click()
    expect(creds.row("partner-basic")).to_contain_text("svc-partner")
    expect(creds.row("partner-basic")).to_contain_text(re.compile(r"no workflow"))
    assert_accessible(page)
    screenshot(page, "credentials-list")

    # Replace: every field again, the secret empty, the username as stored.
    creds.row("partner-basic").get_by_role("link", name="Replace credential partner-basic").click()
    expect(field(page, "Username")).to_have_value("svc-partner")
    expect(field(page, "Password")).to_have_value("")
    field(page, "Username").fill("svc-partner-2")
    page.get_by_role("button", name="Replace credential").click()
    expect(page.locator("#field-password-error")).to_contain_text("needs 'password'")
    expect(field(page, "Username")).to_have_value("svc-partner-2")
    field(page, "Password").fill(CANARY_3)
    page.get_by_role("button", name="Replace credential").click()
    expect(page.get_by_role("status").filter(has_text="Credential replaced.")).to_be_visible()
    expect(creds.row("partner-basic")).to_contain_text("svc-partner-2")
    stored = {c["name"]: c for c in admin_api.call("GET", "/credentials")}
    assert stored["partner-basic"]["fields"]["username"] == "svc-partner-2"

    # The workflow that uses it runs (its output redacted), then no page holds any value.
    execution_id = admin_api.execute("uses-canary", {})
    admin_api.until_finished([execution_id])
    html = html_of_every_page(context, execution_id, ["canary_api", "partner-basic"])
    for value in (CANARY, CANARY_2, CANARY_3):
        assert value not in html
    page.goto(f"/w/{WS}/executions/{execution_id}")
    page.locator('details.step[data-node-id="call"] summary').click()
    expect(page.locator('details.step[data-node-id="call"]')).to_contain_text("***")
    for value in (CANARY, CANARY_2, CANARY_3):
        assert value not in page.content()

    # Delete: the confirmation names the workflow that uses it; dismissed, nothing happens.
    creds.open()
    messages: list[str] = []

    def dismiss(dialog: object) -> None:
        messages.append(dialog.message)  # type: ignore[attr-defined]
        dialog.dismiss()  # type: ignore[attr-defined]

    page.once("dialog", dismiss)
    creds.row("canary_api").get_by_role("button", name="Delete credential canary_api").click()
    expect(creds.row("canary_api")).to_be_visible()
    assert messages and "uses-canary" in messages[0] and "canary_api" in messages[0]
    page.once("dialog", lambda dialog: dialog.accept())
    creds.row("canary_api").get_by_role("button", name="Delete credential canary_api").click()
    expect(page.get_by_role("status").filter(has_text="Credential deleted.")).to_be_visible()
    expect(creds.row("canary_api")).to_have_count(0)
    assert "canary_api" not in {c["name"] for c in admin_api.call("GET", "/credentials")}

    page.set_viewport_size(PHONE)
    creds.open()
    expect(creds.row("partner-basic")).to_be_visible()
    assert_accessible(page)
    screenshot(page, "credentials-phone")
    page.emulate_media(color_scheme="dark")
    creds.open().new("SMTP account")
    expect(field(page, "Security")).to_have_value("starttls")
    expect(field(page, "Port")).to_have_value("587")
    screenshot(page, "credentials-smtp-form-dark")


def test_a_viewer_sees_credentials_without_controls_and_their_posts_are_refused(
    browser: Browser, dashboard: ServerProcess, admin_api: AdminApi, database_url: str
) -> None:
    admin_api.call(
        "POST",
        "/credentials",
        201,
        json={"name": "viewer-sees", "type": "header", "data": {"name": "X-Key", "value": CANARY}},
    )
    create_user(database_url, "vic@example.com", WS, "viewer")
    context = new_context(browser, dashboard)
    sign_in(context, "vic@example.com", PASSWORD)
    page = context.new_page()
    creds = CredentialsPage(page).open()
    expect(creds.row("viewer-sees")).to_contain_text("X-Key")
    expect(page.locator("#read-only-note")).to_contain_text("viewer")
    expect(page.get_by_role("button", name=STATE_CHANGING)).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("^(New credential|Replace)"))).to_have_count(0)
    assert CANARY not in page.content()
    assert_accessible(page)
    screenshot(page, "credentials-viewer")

    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    for path, form in (
        ("credentials", {"type": "bearer", "name": "sneaky", "field.token": "sneaky-token"}),
        ("credentials/viewer-sees", {"field.name": "X-Other", "field.value": "other-value"}),
        ("credentials/viewer-sees/delete", {}),
    ):
        answer = context.request.post(f"/w/{WS}/{path}", form={"csrf_token": csrf, **form})
        assert answer.status == 403, (path, answer.status)
    assert context.request.get(f"/w/{WS}/credentials/new?type=bearer").status == 403
    names = {c["name"]: c for c in admin_api.call("GET", "/credentials")}
    assert "sneaky" not in names
    assert names["viewer-sees"]["fields"] == {"name": "X-Key"}
    context.close()


def test_a_form_without_the_csrf_token_is_refused(page: Page, admin_api: AdminApi) -> None:
    answer = page.request.post(
        f"/w/{WS}/credentials", form={"type": "bearer", "name": "forged", "field.token": "abcd1"}
    )
    assert answer.status == 403
    assert "forged" not in {c["name"] for c in admin_api.call("GET", "/credentials")}
