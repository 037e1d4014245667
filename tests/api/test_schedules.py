"""The schedule endpoints (both backends): create, list, show with the next five fire times,
enable/disable, delete, occurrences, backfill with its dry run; roles and workspaces."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.store.accounts import Role
from tests.api.conftest import Api, B

DEFINITION: dict[str, Any] = {
    "name": "nightly",
    "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
    "triggers": [
        {"type": "schedule", "id": "declared", "cron": "30 2 * * *", "timezone": "Europe/Paris"}
    ],
}


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def test_create_list_show_enable_disable_delete(api: Api) -> None:
    await api.create(DEFINITION)
    base = api.ws()
    created = await api.http.post(
        f"{base}/workflows/nightly/schedules",
        json={"id": "hourly", "cron": "@hourly", "input": {"n": 1}},
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert schedule["source"] == "api" and schedule["key"] == "hourly"
    assert schedule["spec"]["cron"] == "0 * * * *"
    times = [datetime.fromisoformat(t) for t in schedule["next_fire_times"]]
    assert len(times) == 5
    assert all(t.minute == 0 and t.second == 0 for t in times)
    assert [b - a for a, b in itertools.pairwise(times)] == [timedelta(hours=1)] * 4

    listed = await api.http.get(f"{base}/workflows/nightly/schedules")
    assert listed.status_code == 200
    assert {(s["key"], s["source"]) for s in listed.json()} == {
        ("declared", "definition"),
        ("hourly", "api"),
    }
    again = await api.http.post(
        f"{base}/workflows/nightly/schedules", json={"id": "hourly", "every": "5m"}
    )
    assert again.status_code == 409

    url = f"{base}/schedules/{schedule['id']}"
    disabled = await api.http.post(f"{url}/disable")
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    enabled = await api.http.post(f"{url}/enable")
    assert enabled.json()["enabled"] is True and enabled.json()["next_fire_at"] is None
    shown = await api.http.get(url)
    assert shown.status_code == 200 and shown.json()["recent_fires"] == []
    assert (await api.http.delete(url)).status_code == 204
    gone = await api.http.get(url)
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"


async def test_bad_schedules_are_refused(api: Api) -> None:
    await api.create(DEFINITION)
    url = f"{api.ws()}/workflows/nightly/schedules"
    for body in (
        {"id": "x", "cron": "@hourly", "timezone": "Mars/Olympus"},
        {"id": "x", "cron": "61 * * * *"},
        {"id": "x"},
        {"id": "x", "every": "1m", "overlap": "sometimes"},
    ):
        response = await api.http.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
    # well formed, but useless: a date that never comes, a zone that is the server's own
    for body in (
        {"id": "x", "cron": "0 0 30 2 *"},
        {"id": "x", "cron": "@daily", "timezone": "localtime"},
    ):
        response = await api.http.post(url, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert all(s["key"] != "x" for s in (await api.http.get(url)).json())
    missing = await api.http.post(f"{api.ws()}/workflows/nope/schedules", json={"id": "x"})
    assert missing.status_code in (404, 422)


async def test_backfill_starts_each_occurrence_once(api: Api) -> None:
    await api.create(DEFINITION)
    base = api.ws()
    created = await api.http.post(
        f"{base}/workflows/nightly/schedules", json={"id": "quarter", "cron": "*/15 * * * *"}
    )
    url = f"{base}/schedules/{created.json()['id']}"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now.replace(minute=0) - timedelta(hours=3)
    body = {"start": iso(start), "end": iso(start + timedelta(hours=1)), "dry_run": True}

    dry = await api.http.post(f"{url}/backfill", json=body)
    assert dry.status_code == 200, dry.text
    assert dry.json() == {
        "occurrences": 4,
        "started": 0,
        "already": 0,
        "dry_run": True,
        "execution_ids": [],
    }
    done = await api.http.post(f"{url}/backfill", json={**body, "dry_run": False})
    assert done.json()["started"] == 4 and len(done.json()["execution_ids"]) == 4
    for execution_id in done.json()["execution_ids"]:
        row = await api.until_finished(execution_id)
        assert row["trigger_type"] == "schedule" and row["status"] == "succeeded"

    repeated = await api.http.post(f"{url}/backfill", json={**body, "dry_run": False})
    assert repeated.json()["started"] == 0 and repeated.json()["already"] == 4
    wider = {**body, "end": iso(start + timedelta(hours=2)), "dry_run": False}
    more = await api.http.post(f"{url}/backfill", json=wider)
    assert more.json()["occurrences"] == 8 and more.json()["started"] == 4

    fires = await api.http.get(f"{url}/fires", params={"status": "started", "limit": 100})
    assert fires.status_code == 200
    nominals = [f["nominal_at"] for f in fires.json()]
    assert len(nominals) == 8 and nominals == sorted(nominals, reverse=True)
    assert all(f["reason"] == "started by a backfill" for f in fires.json())

    too_many = {"start": iso(now - timedelta(days=30)), "end": iso(now)}
    refused = await api.http.post(f"{url}/backfill", json=too_many)
    assert refused.status_code == 400 and "1000" in refused.json()["detail"]
    backwards = {"start": iso(now), "end": iso(now - timedelta(hours=1))}
    assert (await api.http.post(f"{url}/backfill", json=backwards)).status_code == 400
    bad_status = await api.http.get(f"{url}/fires", params={"status": "exploded"})
    assert bad_status.status_code == 422


async def test_viewers_read_and_other_workspaces_see_nothing(api: Api) -> None:
    await api.create(DEFINITION)
    listed = await api.http.get(f"{api.ws()}/workflows/nightly/schedules")
    schedule_id = listed.json()[0]["id"]
    viewer = api.as_(await api.caller(Role.VIEWER))
    assert (await viewer.get(f"{api.ws()}/schedules/{schedule_id}")).status_code == 200
    for response in (
        await viewer.post(f"{api.ws()}/schedules/{schedule_id}/disable"),
        await viewer.delete(f"{api.ws()}/schedules/{schedule_id}"),
        await viewer.post(
            f"{api.ws()}/workflows/nightly/schedules", json={"id": "x", "cron": "@daily"}
        ),
    ):
        assert response.status_code == 403
    outsider = await api.caller(Role.OWNER, B)
    other = api.as_(outsider)
    assert (await other.get(f"{api.ws(B)}/schedules/{schedule_id}")).status_code == 404
    assert (await other.post(f"{api.ws(B)}/schedules/{schedule_id}/disable")).status_code == 404


async def test_metrics_count_occurrences_by_status(api: Api) -> None:
    response = await api.http.get("/metrics")
    assert response.status_code == 200
    text = response.text
    for status in ("started", "skipped", "missed", "buffered"):
        assert f'conveyor_schedule_occurrences_total{{status="{status}"}} 0.0' in text
