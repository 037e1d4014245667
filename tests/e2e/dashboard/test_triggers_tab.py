"""The workflow page's Triggers tab of a real ``conveyor server``, in Chromium: a definition
declaring a schedule and two webhooks, with occurrences and deliveries seeded in the database
(the scheduler and the hook route write the same rows); the tab shows the timing in words,
the next fire time, skipped and missed occurrences with their reasons, the webhook URL (copy
button), the auth modes (none as a warning), deliveries and the executions they started; a
toggle calls the enable / disable endpoint; the test request reaches the hook URL. Then the
monitor filtered by the schedule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect
from sqlalchemy import insert, select, update

from conveyor.store import Database
from conveyor.store.tables import (
    executions,
    schedule_fires,
    schedules,
    webhook_deliveries,
    webhooks,
)
from tests.e2e.dashboard.browser import (
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    assert_accessible,
    screenshot,
)
from tests.e2e.dashboard.pages_executions import ExecutionsPage
from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key

WS = f"{API}/workspaces/{WORKSPACE}"
pytestmark = pytest.mark.timeout(120)
PARIS = ZoneInfo("Europe/Paris")


def next_weekday_morning(now: datetime) -> datetime:
    """The schedule's next fire time, worked out here day by day (an oracle independent of
    the scheduler's cron code): the next Monday to Friday 09:00 in Paris after ``now``."""
    day = now.astimezone(PARIS).date()
    while True:
        moment = datetime.combine(day, time(9), PARIS)
        if moment > now and moment.weekday() < 5:
            return moment.astimezone(UTC)
        day += timedelta(days=1)


REPORT = {
    "name": "daily-report",
    "description": "Builds the morning report; also started by the shop's order webhook.",
    "nodes": [{"id": "build", "type": "transform", "config": {"output": {"ok": True}}}],
    "triggers": [
        {
            "type": "schedule",
            "id": "weekday-morning",
            "cron": "0 9 * * 1-5",
            "timezone": "Europe/Paris",
        },
        {"type": "webhook", "id": "shop-orders", "auth": {"mode": "none"}},
        {
            "type": "webhook",
            "id": "github-push",
            "auth": {"mode": "signature", "scheme": "github"},
        },
    ],
}
SKIPPED = "the previous execution (…4f2a) was still running (overlap: skip)"
MISSED = "no scheduler ran between 09:00 and 09:03 (catch-up: skip)"


@pytest.fixture
def client(dashboard: ServerProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {api_key(dashboard.base_url)}"}
    with httpx.Client(base_url=dashboard.base_url, headers=headers, timeout=10) as c:
        yield c


def execute(client: httpx.Client, workflow: str) -> str:
    response = client.post(f"{WS}/workflows/{workflow}/execute", json={"input": {}})
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


def seed(server: ServerProcess, started: list[str]) -> dict[str, Any]:
    """Occurrences and deliveries as the scheduler and the hook route record them; the
    first execution marked as started by the schedule, the second by the open webhook."""
    db = Database(server.database_url)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        with db.write() as conn:
            schedule = conn.execute(select(schedules)).mappings().one()
            hooks = {r.key: r for r in conn.execute(select(webhooks))}
            conn.execute(
                update(schedules)
                .where(schedules.c.id == schedule["id"])
                # What the scheduler (where it runs) writes too, so their order is moot.
                .values(next_fire_at=next_weekday_morning(now))
            )
            fires = [
                (1, "started", None, started[0]),
                (2, "skipped", SKIPPED, None),
                (3, "missed", MISSED, None),
            ]
            conn.execute(
                insert(schedule_fires),
                [
                    {
                        "schedule_id": schedule["id"],
                        "nominal_at": now - timedelta(days=days),
                        "status": status,
                        "reason": reason,
                        "execution_id": execution_id,
                        "created_at": now,
                    }
                    for days, status, reason, execution_id in fires
                ],
            )
            shop = hooks["shop-orders"]
            conn.execute(
                insert(webhook_deliveries),
                [
                    {
                        "webhook_id": shop.id,
                        "received_at": now - timedelta(minutes=minutes),
                        "method": "POST",
                        "status_code": code,
                        "outcome": outcome,
                        "detail": detail,
                        "execution_id": execution_id,
                    }
                    for minutes, code, outcome, detail, execution_id in (
                        (4, 202, "started", None, started[1]),
                        (7, 200, "duplicate", "delivery id seen at 10:02", started[1]),
                        (12, 413, "rejected", "the body is over 1 MiB", None),
                    )
                ],
            )
            for execution_id, kind, trigger_id in (
                (started[0], "schedule", schedule["id"]),
                (started[1], "webhook", shop.id),
            ):
                conn.execute(
                    update(executions)
                    .where(executions.c.id == execution_id)
                    .values(trigger_type=kind, trigger_id=trigger_id)
                )
    finally:
        db.dispose()
    return {"schedule": schedule, "shop": shop, "github": hooks["github-push"]}


def trigger(page: Page, key: str) -> Locator:
    return page.get_by_role("article", name=key)


def disable(page: Page, key: str, endpoint: str) -> None:
    card = trigger(page, key)
    with page.expect_response(lambda r: r.url.endswith(endpoint)) as answered:
        card.get_by_role("button", name="Disable").click()
    assert answered.value.request.method == "POST"
    if answered.value.ok:
        expect(card.locator("[data-enabled-badge]")).to_have_text("disabled")
        expect(card.get_by_role("button", name="Enable")).to_be_focused()
    else:
        kind = "schedule" if "/schedules/" in endpoint else "webhook"
        expect(card.get_by_role("alert")).to_contain_text(f"Could not disable the {kind}")


def test_triggers_tab_shows_schedules_and_webhooks_with_their_history(
    page: Page, context: BrowserContext, client: httpx.Client, dashboard: ServerProcess
) -> None:
    response = client.post(f"{WS}/workflows", json={"definition": REPORT})
    assert response.status_code == 201, response.text
    started = [execute(client, "daily-report") for _ in range(3)]
    rows = seed(dashboard, started)
    context.grant_permissions(["clipboard-read", "clipboard-write"])

    page.goto(f"/w/{WORKSPACE}/workflows/daily-report")
    page.get_by_role("tab", name="Triggers").click()
    panel = page.get_by_role("tabpanel", name="Triggers")
    expect(panel.get_by_role("heading", name="Schedules")).to_be_visible()

    schedule = trigger(page, "weekday-morning")
    expect(schedule).to_contain_text("at 09:00 on Monday to Friday, Europe/Paris time")
    next_fires = schedule.locator("[data-next-fires] li")
    expect(next_fires.first).to_contain_text("09:00 Europe/Paris")
    first = next_fires.first.locator("time").get_attribute("datetime")
    assert first and datetime.fromisoformat(first) == next_weekday_morning(datetime.now(UTC))
    detail = client.get(f"{WS}/schedules/{rows['schedule']['id']}")
    if detail.status_code == 200:  # the schedules API gives the next five
        expect(next_fires).to_have_count(5)
        expect(next_fires.last).to_contain_text("09:00 Europe/Paris")
    occurrences = schedule.get_by_role("table", name="Last occurrences of weekday-morning")
    expect(occurrences.locator("tbody tr")).to_have_count(3)
    expect(occurrences.locator('tr[data-fire-status="skipped"]')).to_contain_text(SKIPPED)
    expect(occurrences.locator('tr[data-fire-status="missed"]')).to_contain_text(MISSED)
    expect(occurrences.get_by_role("link", name=started[0][:12])).to_have_attribute(
        "href", f"/w/{WORKSPACE}/executions/{started[0]}"
    )

    shop = trigger(page, "shop-orders")
    url = f"{dashboard.base_url}/hooks/{rows['shop'].token}"
    expect(shop.get_by_label("URL of webhook shop-orders")).to_have_value(url)
    expect(shop.locator(".auth-none")).to_contain_text("Anyone who knows this URL")
    deliveries = shop.get_by_role("table", name="Last deliveries to shop-orders")
    expect(deliveries.locator("tbody tr")).to_have_count(3)
    expect(deliveries.locator('tr[data-delivery-outcome="rejected"]')).to_contain_text("413")
    github = trigger(page, "github-push")
    expect(github.locator("[data-auth-mode]")).to_have_text(
        "Signature: GitHub (X-Hub-Signature-256)"
    )
    expect(github.locator(".auth-none")).to_have_count(0)
    assert_accessible(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    panel.screenshot(path=str(SCREENSHOTS / "workflow-triggers.png"))

    shop.get_by_role("button", name="Copy the URL of webhook shop-orders").click()
    expect(page.locator("#triggers-status")).to_have_text("Copied to the clipboard")
    assert page.evaluate("() => navigator.clipboard.readText()") == url

    # The test request goes to the hook URL itself, without the session cookie.
    shop.get_by_text("Send a test request").click()
    with page.expect_request(lambda r: r.url == url and r.method == "POST") as sent:
        shop.get_by_role("button", name="Send test request").click()
    assert sent.value.post_data_json == {"hello": "world"}
    answer = shop.locator("[data-test-status]")
    expect(answer).to_contain_text("Answered")
    if answer.get_attribute("data-test-status") == "202":  # the hook route is served
        expect(deliveries.locator("tbody tr")).to_have_count(4)  # the tab was read again
        expect(answer).to_be_visible()  # and the answer kept
    github.get_by_text("Send a test request").click()
    expect(github.locator("pre")).to_contain_text("X-Hub-Signature-256: sha256=$SIG")

    # Backfill: a dry run first, its count shown, and nothing started before confirming.
    schedule.get_by_text("Backfill a past time range").click()
    schedule.get_by_label("From (UTC)").fill("2026-11-02T00:00")
    schedule.get_by_label("To (UTC)").fill("2026-11-07T00:00")
    backfill = f"{WS}/schedules/{rows['schedule']['id']}/backfill"
    with page.expect_response(lambda r: r.url.endswith(backfill)) as counted:
        schedule.get_by_role("button", name="Count occurrences").click()
    assert counted.value.request.post_data_json == {
        "start": "2026-11-02T00:00:00.000Z",
        "end": "2026-11-07T00:00:00.000Z",
        "dry_run": True,
    }
    if counted.value.ok:  # Monday to Friday at 09:00 Paris: five occurrences
        expect(schedule.locator("[data-backfill-count]")).to_have_text(
            "5 occurrences in this range: confirming starts 5 executions."
        )
        expect(schedule.get_by_role("button", name="Start 5 executions")).to_be_focused()
        screenshot(page, "workflow-triggers-backfill")
        schedule.get_by_role("button", name="Start 5 executions").click()
        expect(schedule.locator("[data-backfill-result]")).to_have_text(
            "Backfill started 5 executions."
        )
        expect(occurrences.locator('tr[data-fire-status="started"]')).to_have_count(6)
    else:
        expect(schedule.get_by_role("alert")).to_have_text(
            "Could not count the occurrences: this server does not offer it."
        )
        screenshot(page, "workflow-triggers-backfill")

    # Disable calls the schedules and webhooks APIs (built beside this page); a server
    # without the endpoint shows why beside the trigger.
    disable(page, "weekday-morning", f"{WS}/schedules/{rows['schedule']['id']}/disable")
    disable(page, "github-push", f"{WS}/webhooks/{rows['github'].id}/disable")

    page.set_viewport_size(PHONE)
    shop.scroll_into_view_if_needed()
    screenshot(page, "workflow-triggers-phone")
    assert_accessible(page)
    page.set_viewport_size(DESKTOP)

    # The monitor: only what the schedule started.
    monitor = ExecutionsPage(page).open()
    monitor.filters.get_by_label("Started by").select_option(
        label="daily-report · weekday-morning (schedule)"
    )
    monitor.apply_filters()
    expect(page).to_have_url(f"/w/{WORKSPACE}/executions?trigger_id={rows['schedule']['id']}")
    # What the schedule started: the seeded one (and the backfill's, where it ran).
    expect(monitor.row(started[0])).to_be_visible()
    expect(monitor.rows.filter(has_not_text="schedule")).to_have_count(0)
    for other in (started[1], started[2]):
        expect(monitor.row(other)).to_have_count(0)
    screenshot(page, "executions-by-trigger")
    monitor.filters.get_by_label("Trigger", exact=True).select_option("webhook")
    monitor.filters.get_by_label("Started by").select_option("")
    monitor.apply_filters()
    expect(page).to_have_url(f"/w/{WORKSPACE}/executions?trigger=webhook")
    # With the hook route served, the test request above started one more.
    expect(monitor.row(started[1])).to_be_visible()
    for other in (started[0], started[2]):
        expect(monitor.row(other)).to_have_count(0)
    assert_accessible(page)
