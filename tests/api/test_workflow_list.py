"""The workflows list as the dashboard shows it (last execution, success rate, executions in
the last 24 hours, search and status filter) and diffs between versions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from conveyor.store.tables import executions
from tests.api.conftest import Api
from tests.api.support import failing, problem_of, transform


def items(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in body["items"]}


async def test_each_workflow_shows_its_last_execution_success_rate_and_recent_count(
    api: Api,
) -> None:
    await api.create(transform("steady"))
    await api.create(failing("shaky"))
    await api.create(transform("idle"))
    steady = [await api.execute("steady", {"n": n}) for n in range(3)]
    for execution_id in steady:
        await api.until_finished(execution_id)
    await api.until_finished(await api.execute("shaky"))

    # one of steady's executions was created two days ago
    def age(conn: Any) -> None:
        old = api.store.clock.now() - timedelta(days=2)
        conn.execute(update(executions).where(executions.c.id == steady[0]).values(created_at=old))

    await api.store.write(age)

    response = await api.http.get(f"{api.ws()}/workflows")
    assert response.status_code == 200, response.text
    found = items(response.json())
    assert found["steady"]["last_execution"]["id"] == steady[2]
    assert found["steady"]["last_execution"]["status"] == "succeeded"
    assert found["steady"]["success_rate"] == 1.0
    assert found["steady"]["executions_24h"] == 2
    assert found["steady"]["latest_version"] == 1 and found["steady"]["status"] == "active"
    assert found["shaky"]["last_execution"]["status"] == "failed"
    assert found["shaky"]["success_rate"] == 0.0
    assert found["idle"]["last_execution"] is None
    assert found["idle"]["success_rate"] is None and found["idle"]["executions_24h"] == 0


async def test_search_by_part_of_the_name_in_any_case_and_filter_by_status(api: Api) -> None:
    for name in ("Billing-sync", "billing_report", "orders"):
        await api.create(transform(name))
    await api.http.post(f"{api.ws()}/workflows/orders/pause")
    url = f"{api.ws()}/workflows"

    async def names(**params: Any) -> list[str]:
        response = await api.http.get(url, params=params)
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()["items"]]

    assert await names(q="BILLING") == ["Billing-sync", "billing_report"]
    # '_' and '%' are characters, not LIKE's wildcards
    assert await names(q="ing_") == ["billing_report"]
    assert await names(q="%") == []
    assert await names(status="paused") == ["orders"]
    assert await names(status=["paused", "active"], q="r") == ["billing_report", "orders"]
    assert await names(q="nothing-like-it") == []
    first = (await api.http.get(url, params={"q": "i", "limit": 1})).json()
    assert [i["name"] for i in first["items"]] == ["Billing-sync"] and first["has_more"]
    rest = await names(q="i", cursor=first["next_cursor"])
    assert rest == ["billing_report"]
    problem_of(await api.http.get(url, params={"status": "sleeping"}), 422)


async def test_a_diff_between_two_versions_has_the_yaml_and_the_changes(api: Api) -> None:
    first = transform("evolving", output=1)
    second = {
        "name": "evolving",
        "nodes": [
            {"id": "t", "type": "transform", "config": {"output": 2}},
            {"id": "more", "type": "transform", "needs": ["t"], "config": {"output": 3}},
        ],
    }
    await api.create(first)
    await api.create(second)
    url = f"{api.ws()}/workflows/evolving/versions"
    response = await api.http.get(f"{url}/1/diff/2")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from_version"], body["to_version"]) == (1, 2)
    lines = body["unified"].splitlines()
    assert lines[:2] == ["--- evolving v1", "+++ evolving v2"]
    assert "-    output: 1" in lines and "+    output: 2" in lines
    assert body["changes"]["nodes"] == {
        "added": ["more"],
        "removed": [],
        "changed": [{"id": "t", "fields": ["config"]}],
    }
    assert body["changes"]["edges"]["added"] == [{"from": "t", "to": "more", "branch": None}]
    back = (await api.http.get(f"{url}/2/diff/1")).json()
    assert back["changes"]["nodes"]["removed"] == ["more"]
    assert (await api.http.get(f"{url}/2/diff/2")).json()["unified"] == ""
    problem_of(await api.http.get(f"{url}/1/diff/3"), 404)
    problem_of(await api.http.get(f"{api.ws()}/workflows/nope/versions/1/diff/1"), 404)
