"""The statistics page's API: executions, failures and durations per bucket of time, and
per workflow and per user over a time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.store.accounts import Role
from tests.api.conftest import Api
from tests.api.support import failing, problem_of, transform


async def _stats(api: Api, path: str, **params: Any) -> Any:
    response = await api.http.get(f"{api.ws()}/stats/{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _iso(moment: datetime) -> str:
    return moment.isoformat()


async def _world(api: Api) -> tuple[str, str]:
    """Two successes (one by a member) and a failure, all finished."""
    member = await api.caller(Role.MEMBER)
    await api.create(transform("ok"))
    await api.create(failing("bad"))
    for workflow, client in (("ok", api.http), ("ok", api.as_(member)), ("bad", api.http)):
        await api.until_finished(await api.execute(workflow, client=client))
    return member.user_id, member.email


async def test_a_timeseries_of_the_last_day_by_default(api: Api) -> None:
    await _world(api)
    series = await _stats(api, "timeseries")
    assert series["bucket"] == "hour"  # 24 hours: 24 buckets of an hour
    start, end = (datetime.fromisoformat(series[k]) for k in ("from", "to"))
    assert end - start == timedelta(hours=24)
    assert 24 <= len(series["buckets"]) <= 25
    assert sum(b["executions"] for b in series["buckets"]) == 3
    busy = [b for b in series["buckets"] if b["executions"]]
    assert sum(b["succeeded"] for b in busy) == 2 and sum(b["failed"] for b in busy) == 1
    assert all(b["p50_ms"] is not None and b["p50_ms"] <= b["p95_ms"] for b in busy)


async def test_a_timeseries_for_a_range_a_workflow_and_a_user(api: Api) -> None:
    member_id, member_email = await _world(api)
    now = datetime.now(UTC)
    hour = {"from": _iso(now - timedelta(hours=1)), "to": _iso(now + timedelta(minutes=1))}
    by_minute = await _stats(api, "timeseries", **hour)
    assert by_minute["bucket"] == "minute" and len(by_minute["buckets"]) in (61, 62)
    by_day = await _stats(api, "timeseries", bucket="day", **hour)
    assert [b["executions"] for b in by_day["buckets"] if b["executions"]] in ([3], [1, 2], [2, 1])
    bad = await _stats(api, "timeseries", workflow="bad", **hour)
    assert sum(b["failed"] for b in bad["buckets"]) == 1
    assert sum(b["executions"] for b in bad["buckets"]) == 1
    for user in (member_id, member_email):
        mine = await _stats(api, "timeseries", user=user, **hour)
        assert sum(b["executions"] for b in mine["buckets"]) == 1

    url = f"{api.ws()}/stats/timeseries"
    long = {"from": _iso(now - timedelta(days=30)), "to": _iso(now)}
    body = problem_of(await api.http.get(url, params={**long, "bucket": "minute"}), 400)
    assert "use 'day'" in body["detail"]
    reversed_range = {"from": hour["to"], "to": hour["from"]}
    problem_of(await api.http.get(url, params=reversed_range), 400)
    problem_of(await api.http.get(url, params={"from": "2026-01-01T00:00:00"}), 422)  # naive
    problem_of(await api.http.get(url, params={"workflow": "nope"}), 404)


async def test_per_workflow_and_per_user_tables(api: Api) -> None:
    member_id, member_email = await _world(api)
    workflows = await _stats(api, "workflows")
    assert [(w["workflow_name"], w["executions"]) for w in workflows] == [("ok", 2), ("bad", 1)]
    ok = workflows[0]
    assert ok["success_rate"] == 1.0 and workflows[1]["success_rate"] == 0.0
    assert ok["p50_ms"] is not None and ok["p50_ms"] <= ok["p95_ms"]
    assert ok["tokens"] == 0 and ok["api_calls"] == 0
    earlier = {"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}
    assert await _stats(api, "workflows", **earlier) == []

    all_time = {u["user_id"]: u for u in await _stats(api, "users")}
    assert all_time[member_id]["executions"] == 1
    assert all_time[member_id]["email"] == member_email
    assert all_time[api.owner.user_id]["executions"] == 2
    assert all_time[api.owner.user_id]["p50_ms"] is not None
    ranged = {u["user_id"]: u for u in await _stats(api, "users", **{"from": "2020-01-01T00:00Z"})}
    owner = ranged[api.owner.user_id]
    assert (owner["executions"], owner["succeeded"], owner["failed"]) == (2, 1, 1)
    assert owner["success_rate"] == 0.5
    assert await _stats(api, "users", **earlier) == []
