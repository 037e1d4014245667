"""What the dashboard and the API show of triggers, on both backends: executions filtered by
trigger type and by trigger id (list, counts, bulk selection, the monitor page), the recent
occurrences read per workspace, and the workflow page's Triggers tab."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, insert, update

from conveyor import web
from conveyor.store import trigger_history, triggers
from conveyor.store.accounts import Role
from conveyor.store.tables import executions, schedule_fires, webhook_deliveries
from tests.api.conftest import Api, B
from tests.api.support import problem_of
from tests.api.test_web_executions import shown, signed_in

NOW = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
NIGHTLY = {"type": "schedule", "id": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris"}
OPEN_HOOK = {"type": "webhook", "id": "orders", "auth": {"mode": "none"}}


def hooked(name: str = "hooked") -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [{"id": "t", "type": "transform", "config": {"output": {"ok": True}}}],
        "triggers": [NIGHTLY, OPEN_HOOK],
    }


async def trigger_rows(api: Api, workspace_id: str, workflow_id: str) -> dict[str, Any]:
    """The workflow's schedule and webhook rows by key."""
    found = {}
    for kind in ("schedule", "webhook"):
        for row in await api.store.read(
            triggers.list_for_workflow, kind, workspace_id, workflow_id
        ):
            found[row["key"]] = row
    return found


async def started_by(api: Api, execution_id: str, kind: str, trigger_id: str) -> None:
    """Mark an execution as started by a trigger (the scheduler and the hook route do this
    at enqueue; neither is needed to test what reads it)."""

    def mark(conn: Connection) -> None:
        conn.execute(
            update(executions)
            .where(executions.c.id == execution_id)
            .values(trigger_type=kind, trigger_id=trigger_id)
        )

    await api.store.write(mark)


async def add_history(api: Api, schedule_id: str, webhook_id: str, execution_id: str) -> None:
    def add(conn: Connection) -> None:
        conn.execute(
            insert(schedule_fires),
            [
                {
                    "schedule_id": schedule_id,
                    "nominal_at": NOW - timedelta(days=days),
                    "status": status,
                    "reason": reason,
                    "execution_id": started,
                    "created_at": NOW,
                }
                for days, status, reason, started in (
                    (1, "started", None, execution_id),
                    (2, "skipped", "the previous execution was still running", None),
                    (3, "missed", "no scheduler ran at the time (catch-up: skip)", None),
                )
            ],
        )
        conn.execute(
            insert(webhook_deliveries),
            [
                {
                    "webhook_id": webhook_id,
                    "received_at": NOW - timedelta(minutes=minutes),
                    "method": "POST",
                    "status_code": code,
                    "outcome": outcome,
                    "detail": detail,
                    "execution_id": started,
                }
                for minutes, code, outcome, detail, started in (
                    (5, 202, "started", None, execution_id),
                    (9, 413, "rejected", "body over 1048576 bytes", None),
                )
            ],
        )

    await api.store.write(add)


async def _ids(api: Api, path: str = "/executions", **params: Any) -> list[str]:
    response = await api.http.get(f"{api.ws()}{path}", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_executions_filter_by_trigger_type_and_trigger_id(api: Api) -> None:
    created = await api.create(hooked())
    rows = await trigger_rows(api, api.owner.workspace_id, created["id"])
    schedule, hook = rows["nightly"]["id"], rows["orders"]["id"]
    made = [await api.execute("hooked") for _ in range(3)]
    for execution_id in made:
        await api.until_finished(execution_id)
    await started_by(api, made[0], "schedule", schedule)
    await started_by(api, made[1], "webhook", hook)

    assert await _ids(api, trigger_id=schedule) == [made[0]]
    assert await _ids(api, trigger_type="webhook") == [made[1]]
    assert await _ids(api, trigger_type="api") == [made[2]]
    assert await _ids(api, trigger_type="webhook", trigger_id=schedule) == []
    assert await _ids(api, "/workflows/hooked/executions", trigger_id=hook) == [made[1]]
    listed = (await api.http.get(f"{api.ws()}/executions", params={"trigger_id": hook})).json()
    assert listed["items"][0]["trigger_id"] == hook
    assert listed["stats"]["total"] == 1
    counts = await api.http.get(f"{api.ws()}/executions/counts", params={"trigger_id": hook})
    assert counts.json()["total"] == 1  # not the workspace's counters
    bulk = await api.http.post(
        f"{api.ws()}/executions/bulk",
        json={"action": "retry", "filter": {"trigger_id": schedule}, "dry_run": True},
    )
    assert bulk.status_code == 200, bulk.text
    assert bulk.json()["selected"] == 1
    too_long = await api.http.get(f"{api.ws()}/executions", params={"trigger_id": "x" * 33})
    problem_of(too_long, 422)


async def test_recent_occurrences_are_read_per_workspace_newest_first(api: Api) -> None:
    created = await api.create(hooked())
    rows = await trigger_rows(api, api.owner.workspace_id, created["id"])
    schedule, hook = rows["nightly"]["id"], rows["orders"]["id"]
    execution_id = await api.execute("hooked")
    await add_history(api, schedule, hook, execution_id)
    other = await api.caller(Role.OWNER, B)
    response = await api.as_(other).post(
        f"{api.ws(B)}/workflows", json={"definition": hooked("elsewhere")}
    )
    assert response.status_code == 201, response.text
    theirs = await trigger_rows(api, other.workspace_id, response.json()["id"])
    await add_history(api, theirs["nightly"]["id"], theirs["orders"]["id"], execution_id)

    ws = api.owner.workspace_id
    fires = await api.store.read(
        trigger_history.recent_fires, ws, [schedule, theirs["nightly"]["id"]], 2
    )
    assert [f["status"] for f in fires[schedule]] == ["started", "skipped"]
    assert fires[schedule][0]["execution_id"] == execution_id
    assert fires[theirs["nightly"]["id"]] == []  # another workspace's schedule
    choices = await api.store.read(trigger_history.workspace_triggers, ws)
    assert [(c["workflow"], c["key"], c["kind"]) for c in choices] == [
        ("hooked", "nightly", "schedule"),
        ("hooked", "orders", "webhook"),
    ]


@pytest.fixture
async def browser(api: Api) -> httpx.AsyncClient:
    web.install(api.app)
    return await signed_in(api, api.owner)


async def test_the_triggers_tab_and_the_monitor_filter(
    api: Api, browser: httpx.AsyncClient
) -> None:
    created = await api.create(hooked())
    rows = await trigger_rows(api, api.owner.workspace_id, created["id"])
    schedule, hook = rows["nightly"], rows["orders"]
    made = [await api.execute("hooked") for _ in range(2)]
    for execution_id in made:
        await api.until_finished(execution_id)
    await started_by(api, made[0], "schedule", schedule["id"])
    await add_history(api, schedule["id"], hook["id"], made[0])

    page = await browser.get("/w/default/workflows/hooked")
    assert page.status_code == 200, page.text
    tab = await browser.get("/w/default/workflows/hooked/triggers")
    assert tab.status_code == 200, tab.text
    for html in (page.text, tab.text):
        assert "at 02:30 every day" not in html  # the words are "every day at 02:30"
        assert "every day at 02:30, Europe/Paris time" in html
        assert "the previous execution was still running" in html
        assert "body over 1048576 bytes" in html
        assert f'value="http://test/hooks/{hook["token"]}"' in html
        assert "No authentication." in html
        assert f'href="/w/default/executions/{made[0]}"' in html
    assert tab.text.lstrip().startswith('<div class="triggers-tab"')

    viewer = await signed_in(api, await api.caller(Role.VIEWER))
    as_viewer = await viewer.get("/w/default/workflows/hooked/triggers")
    assert as_viewer.status_code == 200
    assert hook["token"] not in as_viewer.text  # the URL is what starts executions
    assert "data-toggle" not in as_viewer.text and "Backfill" not in as_viewer.text

    assert await shown(browser, f"trigger_id={schedule['id']}") == [made[0]]
    assert await shown(browser, "trigger=api") == [made[1]]
    monitor = await browser.get(f"/w/default/executions?trigger_id={schedule['id']}")
    selected = re.search(r'<option value="([0-9a-f]+)" selected>([^<]+)</option>', monitor.text)
    assert selected is not None and selected.groups() == (
        schedule["id"],
        "hooked · nightly (schedule)",
    )
    missing = await browser.get("/w/default/workflows/nope/triggers")
    assert missing.status_code == 404
