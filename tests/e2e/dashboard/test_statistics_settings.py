"""The statistics page (counts, success rates, charts, the range in the URL) and the
settings page (API keys shown once and revocable, and then in the audit log; members, the
per-user limit), and a viewer who can change nothing, against a real ``conveyor server``."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from conveyor.store.accounts import csrf_token
from tests.e2e.dashboard.browser import DESKTOP, PHONE, assert_accessible, screenshot
from tests.e2e.dashboard.conftest import conveyor_program, new_context, sign_in
from tests.e2e.dashboard.pages import Layout
from tests.e2e.test_server import ADMIN_EMAIL, ADMIN_PASSWORD, ServerProcess

# A server start takes much of the usual 60 s on a loaded 2-core machine. The statistics and
# members tests check the workspace's totals and whole member list: each has a server of its
# own (fresh_server); the other tests share the module's.
pytestmark = pytest.mark.timeout(120)
API = "/api/v1"
WS = "default"
FINISHED = {"succeeded", "failed", "cancelled", "timed_out"}
PASSWORD = "e2e-user-password"
MIXED = {
    "name": "stats-mixed",
    "nodes": [
        {"id": "check", "type": "condition", "config": {"if": "{{ input.ok }}"}},
        {
            "id": "done",
            "type": "transform",
            "needs": "check.true",
            "config": {"output": {"ok": True}},
        },
        {
            "id": "boom",
            "type": "fail",
            "needs": "check.false",
            "config": {"message": "card declined"},
        },
    ],
}
# A viewer sees none of these (names start with one of them, or mention "bulk").
STATE_CHANGING = re.compile(
    r"^(Run|Execute|Activate|Pause|Archive|Create|Cancel|Retry|Replay|Delete|Save|Revoke|"
    r"Remove|Add|Change|Signal|Approve)\b|bulk",
    re.IGNORECASE,
)


class AdminApi:
    """The REST API as the admin (a session, with the CSRF header on writes)."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=15)
        login = self.http.post(
            f"{API}/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        session = self.http.cookies.get("conveyor_session")
        assert session
        self.http.headers["X-CSRF-Token"] = csrf_token(session)

    def call(self, method: str, path: str, status: int = 200, **options: Any) -> Any:
        response = self.http.request(method, f"{API}/workspaces/{WS}{path}", **options)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def execute(self, workflow: str, payload: dict[str, Any]) -> str:
        accepted = self.call("POST", f"/workflows/{workflow}/execute", 202, json={"input": payload})
        return str(accepted["execution_id"])

    def until_finished(self, ids: list[str], within: float = 30) -> None:
        deadline = time.monotonic() + within
        pending = set(ids)
        while pending:
            for execution_id in list(pending):
                if self.call("GET", f"/executions/{execution_id}")["status"] in FINISHED:
                    pending.discard(execution_id)
            assert time.monotonic() < deadline, f"not finished within {within} s: {pending}"
            if pending:
                time.sleep(0.1)  # polling with a deadline; the assertion is on the outcome

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def admin_api(dashboard: ServerProcess) -> Iterator[AdminApi]:
    client = AdminApi(dashboard.base_url)
    yield client
    client.close()


def create_user(database_url: str, email: str, workspace: str, role: str) -> None:
    """``conveyor users create`` against the server's database, as an operator would."""
    done = subprocess.run(
        [
            *conveyor_program(),
            "users",
            "create",
            email,
            "--workspace",
            workspace,
            "--role",
            role,
            "--database",
            database_url,
        ],
        env={**os.environ, "CONVEYOR_NEW_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@dataclass
class StatisticsPage(Layout):
    def open(self, query: str = "") -> StatisticsPage:
        self.page.goto(f"/w/{WS}/statistics{query}")
        return self

    def workflow_row(self, name: str) -> Locator:
        table = self.page.locator("#workflow-stats")
        return table.get_by_role("row").filter(has=self.page.get_by_role("link", name=name))

    def cells(self, row: Locator) -> list[str]:
        return [c.strip() for c in row.get_by_role("cell").all_inner_texts()]

    def canvas_has_pixels(self, canvas_id: str) -> bool:
        return bool(
            self.page.evaluate(
                """(id) => {
                  const c = document.getElementById(id);
                  const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) return true;
                  return false;
                }""",
                canvas_id,
            )
        )


@dataclass
class SettingsPage(Layout):
    def open(self) -> SettingsPage:
        self.page.goto(f"/w/{WS}/settings")
        return self

    @property
    def new_key(self) -> Locator:
        return self.page.locator("#new-key-value")

    def key_row(self, prefix: str) -> Locator:
        return self.page.locator(f'#key-list tr[data-key-prefix="{prefix}"]')

    def member_row(self, email: str) -> Locator:
        return self.page.locator("#member-list tbody tr").filter(has_text=email)

    def create_key(self, name: str, role: str) -> None:
        self.page.get_by_label("Key name").fill(name)
        self.page.get_by_label("Key role").select_option(role)
        self.page.get_by_role("button", name="Create key").click()

    def add_member(self, email: str, role: str) -> None:
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Role", exact=True).select_option(role)
        self.page.get_by_role("button", name="Add member").click()

    def save_limit(self, value: str) -> None:
        self.page.get_by_label("Running executions per user").fill(value)
        self.page.get_by_role("button", name="Save limit").click()


@pytest.mark.fresh_server
def test_statistics_count_rates_and_draw_charts_over_a_range_in_the_url(
    page: Page, admin_api: AdminApi
) -> None:
    admin_api.call("POST", "/workflows", 201, json={"definition": MIXED})
    ids = [admin_api.execute("stats-mixed", {"ok": ok}) for ok in (True, True, False)]
    admin_api.until_finished(ids)

    stats = StatisticsPage(page).open()
    expect(page.get_by_role("link", name="Last 24 hours")).to_have_attribute("aria-current", "page")
    row = stats.workflow_row("stats-mixed")
    expect(row).to_contain_text("67 %")
    assert stats.cells(row)[:4] == ["3", "2", "1", "67 %"]
    expect(page.locator("#user-stats")).to_contain_text(ADMIN_EMAIL)
    expect(page.locator('[data-total="executions"]')).to_have_text("3")
    for chart in ("chart-executions", "chart-durations"):
        expect(page.locator(f"#{chart}")).to_have_attribute("data-drawn", "true")
        expect(page.get_by_role("img", name=re.compile("^Chart: "))).to_have_count(2)
        assert stats.canvas_has_pixels(chart), f"{chart} is blank"
    page.get_by_text("Show data", exact=True).click()
    data = page.get_by_role("table", name=re.compile("^Executions and failures per hour"))
    expect(data.get_by_role("row")).not_to_have_count(0)

    # Live: another execution changes the totals, the tables and the chart, with no reload
    # (and the opened data table stays open).
    page.evaluate("() => { window.notReloaded = true; }")
    admin_api.until_finished([admin_api.execute("stats-mixed", {"ok": True})])
    expect(page.locator('[data-total="executions"]')).to_have_text("4")
    expect(row).to_contain_text("75 %")
    assert stats.cells(row)[:4] == ["4", "3", "1", "75 %"]
    expect(data).to_be_visible()  # still open
    in_table = [int(n) for n in data.locator("tbody tr td:first-of-type").all_inner_texts()]
    assert sum(in_table) == 4, in_table
    charted = (
        "() => Chart.getChart('chart-executions').data.datasets[0].data.reduce((a, b) => a + b)"
    )
    assert page.evaluate(charted) == 4
    assert page.evaluate("() => window.notReloaded === true")
    assert_accessible(page)
    screenshot(page, "statistics")
    page.emulate_media(color_scheme="dark")
    stats.open()
    expect(page.locator("#chart-executions")).to_have_attribute("data-drawn", "true")
    screenshot(page, "statistics-dark")

    page.get_by_role("link", name="Last 7 days").click()
    expect(page).to_have_url(re.compile(r"/w/default/statistics\?range=7d$"))
    expect(stats.workflow_row("stats-mixed")).to_contain_text("75 %")
    page.get_by_label("From (UTC)").fill("2020-01-01T00:00")
    page.get_by_label("To (UTC)").fill("2020-01-02T00:00")
    page.get_by_role("button", name="Show range").click()
    expect(page).to_have_url(re.compile(r"range=custom&from=2020-01-01T00%3A00&to=2020-01-02"))
    expect(page.locator("#workflow-stats")).to_have_count(0)  # nothing ran in 2020
    expect(page.get_by_label("From (UTC)")).to_have_value("2020-01-01T00:00")

    page.set_viewport_size(PHONE)
    stats.open()
    expect(stats.workflow_row("stats-mixed")).to_contain_text("75 %")
    expect(page.locator("#chart-durations")).to_have_attribute("data-drawn", "true")
    assert_accessible(page)
    screenshot(page, "statistics-phone")


def test_an_api_key_is_shown_once_works_and_stops_working_when_revoked(
    page: Page, dashboard: ServerProcess
) -> None:
    settings = SettingsPage(page).open()
    settings.create_key("", "member")
    expect(page.locator("#key-error")).to_be_visible()
    expect(page.get_by_label("Key role")).to_have_value("member")

    settings.create_key("ci-deploy", "viewer")
    expect(settings.new_key).to_be_visible()
    key = settings.new_key.inner_text().strip()
    prefix = key.split("_")[1]
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("[data-copy-status]")).to_contain_text("Cop")
    assert_accessible(page)
    screenshot(page, "settings-new-key")

    bearer = {"Authorization": f"Bearer {key}"}
    workflows = f"{dashboard.base_url}{API}/workspaces/{WS}/workflows"
    assert httpx.get(workflows, headers=bearer, timeout=10).status_code == 200

    page.reload()
    expect(settings.new_key).to_have_count(0)
    row = settings.key_row(prefix)
    expect(row).to_contain_text("ci-deploy")
    expect(row).to_contain_text("active")
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name=re.compile("^Revoke")).click()
    expect(row).to_contain_text("active")  # dismissed: nothing happened
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=re.compile("^Revoke")).click()
    expect(page.get_by_role("status").filter(has_text="Key revoked.")).to_be_visible()
    expect(settings.key_row(prefix)).to_contain_text("revoked")
    assert httpx.get(workflows, headers=bearer, timeout=10).status_code == 401

    # Both are in the audit log, one link away from the settings page.
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log", level=1)).to_be_visible()
    log = page.get_by_role("table")
    expect(log.locator('tr[data-action="api_key.revoke"]').first).to_contain_text("dashboard")
    expect(log.locator('tr[data-action="api_key.create"]').first).to_contain_text(ADMIN_EMAIL)
    page.get_by_label("Action").fill("api_key.revoke")
    page.get_by_role("button", name="Filter").click()
    expect(log.locator("tbody tr").first).to_have_attribute("data-action", "api_key.revoke")
    expect(log.locator('tr[data-action="api_key.create"]')).to_have_count(0)
    assert_accessible(page)
    screenshot(page, "settings-audit-log")


@pytest.mark.fresh_server
def test_members_are_added_changed_and_removed_and_the_limit_is_saved(
    page: Page, admin_api: AdminApi, database_url: str
) -> None:
    create_user(database_url, "casey@example.com", "elsewhere", "owner")
    settings = SettingsPage(page).open()
    settings.add_member("nobody@example.com", "viewer")
    expect(page.locator("#member-error")).to_contain_text("no user with email")
    expect(page.get_by_label("Email")).to_have_value("nobody@example.com")
    expect(page.get_by_label("Role", exact=True)).to_have_value("viewer")

    settings.add_member("casey@example.com", "viewer")
    expect(settings.member_row("casey@example.com")).to_contain_text("casey@example.com")
    roles = {m["email"]: m["role"] for m in admin_api.call("GET", "/members")}
    assert roles == {ADMIN_EMAIL: "owner", "casey@example.com": "viewer"}

    row = settings.member_row("casey@example.com")
    row.get_by_label("Role of casey@example.com", exact=True).select_option("member")
    row.get_by_role("button", name="Change role of casey@example.com").click()
    expect(settings.member_row("casey@example.com").get_by_role("combobox")).to_have_value("member")
    assert {m["email"]: m["role"] for m in admin_api.call("GET", "/members")}[
        "casey@example.com"
    ] == "member"

    settings.save_limit("0")
    expect(page.locator("#max-running-error")).to_contain_text("greater than or equal to 1")
    expect(page.get_by_label("Running executions per user")).to_have_value("0")
    settings.save_limit("3")
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    assert admin_api.call("GET", "")["max_running_per_user"] == 3
    assert_accessible(page)
    screenshot(page, "settings")
    page.set_viewport_size(PHONE)
    settings.open()
    expect(page.get_by_label("Running executions per user")).to_have_value("3")
    assert_accessible(page)
    screenshot(page, "settings-phone")
    page.set_viewport_size(DESKTOP)

    settings.save_limit("")
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    assert admin_api.call("GET", "")["max_running_per_user"] is None

    # the last owner cannot be removed, so no button offers it
    expect(settings.member_row(ADMIN_EMAIL).get_by_role("button", name="Remove")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    settings.member_row("casey@example.com").get_by_role("button", name="Remove").click()
    expect(settings.member_row("casey@example.com")).to_have_count(0)
    assert [m["email"] for m in admin_api.call("GET", "/members")] == [ADMIN_EMAIL]


def test_a_viewer_sees_no_control_and_the_server_refuses_their_posts(
    browser: Browser, dashboard: ServerProcess, admin_api: AdminApi, database_url: str
) -> None:
    admin_api.call("POST", "/workflows", 201, json={"definition": MIXED})
    execution_id = admin_api.execute("stats-mixed", {"ok": True})
    admin_api.until_finished([execution_id])
    before = admin_api.call("GET", "")
    keys_before = admin_api.call("GET", "/api-keys")
    create_user(database_url, "vera@example.com", WS, "viewer")

    context = new_context(browser, dashboard)
    sign_in(context, "vera@example.com", PASSWORD)
    page = context.new_page()
    for path in (
        "workflows",
        "workflows/stats-mixed",
        "executions",
        f"executions/{execution_id}",
        "statistics",
        "settings",
    ):
        page.goto(f"/w/{WS}/{path}")
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        controls = page.get_by_role("button", name=STATE_CHANGING)
        expect(controls).to_have_count(0)
    expect(page.locator("#read-only-note")).to_contain_text("viewer")
    expect(page.locator("[data-limit]")).to_have_text(str(before["max_running_per_user"]))
    assert_accessible(page)
    screenshot(page, "settings-viewer")

    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    forged = {
        "limits": {"max_running_per_user": "1"},
        "api-keys": {"name": "sneaky", "role": "viewer"},
        "members": {"email": "vera@example.com", "role": "owner"},
    }
    for route, form in forged.items():
        answer = context.request.post(
            f"/w/{WS}/settings/{route}", form={"csrf_token": csrf, **form}
        )
        assert answer.status == 403, (route, answer.status)
    assert admin_api.call("GET", "") == before
    assert admin_api.call("GET", "/api-keys") == keys_before
    roles = {m["email"]: m["role"] for m in admin_api.call("GET", "/members")}
    assert roles["vera@example.com"] == "viewer"
    context.close()


def test_each_page_asks_its_stream_for_the_events_it_shows_only(page: Page) -> None:
    """The workspace stream carries every step of every execution unless a page asks for
    less: a page that shows the "N running" indicator and the inbox asks for the inbox's
    events alone (the counts always come), the statistics for executions' events, the
    monitor for steps too (its progress bars)."""
    stream = re.compile(rf"/api/v1/workspaces/{WS}/stream(\?.*)?$")
    for path, types in (
        ("settings", "notification.,task."),
        ("workflows", "notification.,task."),
        ("statistics", "execution.,notification.,task."),
        ("executions", "execution.,notification.,step.,task."),
    ):
        with page.expect_request(stream) as opened:
            page.goto(f"/w/{WS}/{path}")
        query = parse_qs(urlsplit(opened.value.url).query)
        assert query.get("types") == [types], (path, opened.value.url)
        expect(page.locator("[data-live-status]")).to_have_attribute("data-live-status", "live")
