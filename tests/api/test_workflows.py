"""Workflows over HTTP: create, validate, list with cursors, get, versions, status, stats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from conveyor.store import controls
from tests.api.conftest import Api
from tests.api.support import (
    commit_between_statements,
    live_count_query,
    problem_of,
    transform,
    waiting,
)


def now() -> datetime:
    return datetime.now(UTC)


BRANCHY = {
    "name": "branchy",
    "nodes": [
        {"id": "check", "type": "condition", "config": {"if": "{{ input.fail }}"}},
        {"id": "boom", "type": "fail", "needs": ["check.true"], "config": {"message": "asked to"}},
        {"id": "ok", "type": "transform", "needs": ["check.false"], "config": {"output": 1}},
    ],
}


async def test_create_answers_201_then_200_for_the_same_definition(api: Api) -> None:
    url = f"{api.ws()}/workflows"
    first = await api.http.post(url, json={"definition": transform("greet")})
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["created"] is True
    assert created["name"] == "greet" and created["status"] == "active"
    assert created["latest_version"] == 1
    assert created["definition"]["nodes"][0]["id"] == "t"

    again = await api.http.post(url, json={"definition": transform("greet")})
    assert again.status_code == 200, again.text
    assert again.json()["created"] is False
    assert again.json()["id"] == created["id"]
    assert again.json()["latest_version"] == 1


async def test_an_invalid_definition_is_a_422_problem_locating_each_error(api: Api) -> None:
    definition = {
        "name": "broken",
        "nodes": [
            {"id": "a", "type": "transform", "config": {"output": 1}, "timeout": "soon"},
            {"id": "b", "type": "no.such.type"},
        ],
    }
    response = await api.http.post(f"{api.ws()}/workflows", json={"definition": definition})
    body = problem_of(response, 422)
    assert body["type"].endswith("/invalid-definition")
    located = {(e["node_id"], e["path"]) for e in body["errors"]}
    assert ("a", "timeout") in located, body["errors"]
    assert all(e["message"] for e in body["errors"])
    listed = await api.http.get(f"{api.ws()}/workflows")
    assert listed.json()["items"] == []  # nothing was stored


async def test_a_malformed_request_body_is_a_422_problem(api: Api) -> None:
    response = await api.http.post(f"{api.ws()}/workflows", json={"definitoin": {}})
    body = problem_of(response, 422)
    assert body["type"].endswith("/invalid-request")
    assert any(e["path"].endswith("definition") for e in body["errors"])


async def test_list_pages_through_every_workflow_by_name(api: Api) -> None:
    names = ["e-wf", "a-wf", "d-wf", "b-wf", "c-wf"]
    for name in names:
        await api.create(transform(name))
    url = f"{api.ws()}/workflows"
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await api.http.get(url, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        assert page["next_cursor"]
        cursor = page["next_cursor"]
        assert len(pages) < 10, "pagination does not end"
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert [p["has_more"] for p in pages] == [True, True, False]
    seen = [w["name"] for p in pages for w in p["items"]]
    assert seen == sorted(names)  # in order, no duplicates, no gaps


async def test_a_cursor_the_api_never_issued_is_a_400(api: Api) -> None:
    await api.create(transform("only"))
    response = await api.http.get(f"{api.ws()}/workflows", params={"cursor": "\u00ff-not-a-cursor"})
    problem_of(response, 400)
    bad_limit = await api.http.get(f"{api.ws()}/workflows", params={"limit": 0})
    problem_of(bad_limit, 422)


async def test_get_by_name_or_id_and_404_for_unknown(api: Api) -> None:
    created = await api.create(transform("lookup"))
    by_name = await api.http.get(f"{api.ws()}/workflows/lookup")
    by_id = await api.http.get(f"{api.ws()}/workflows/{created['id']}")
    assert by_name.status_code == by_id.status_code == 200
    assert by_name.json()["id"] == by_id.json()["id"] == created["id"]
    assert by_name.json()["definition"]["name"] == "lookup"
    missing = await api.http.get(f"{api.ws()}/workflows/nope")
    problem_of(missing, 404)


async def test_put_stores_a_new_version_and_keeps_the_old_one(api: Api) -> None:
    await api.create(transform("evolving", output=1))
    url = f"{api.ws()}/workflows/evolving"
    updated = await api.http.put(url, json={"definition": transform("evolving", output=2)})
    assert updated.status_code == 200, updated.text
    assert updated.json()["latest_version"] == 2
    assert updated.json()["created"] is True
    assert updated.json()["definition"]["nodes"][0]["config"] == {"output": 2}

    unchanged = await api.http.put(url, json={"definition": transform("evolving", output=2)})
    assert unchanged.status_code == 200
    assert unchanged.json()["created"] is False
    assert unchanged.json()["latest_version"] == 2

    versions = await api.http.get(f"{url}/versions")
    assert versions.status_code == 200
    assert [v["version"] for v in versions.json()] == [2, 1]
    assert len({v["digest"] for v in versions.json()}) == 2
    first = await api.http.get(f"{url}/versions/1")
    assert first.status_code == 200
    assert first.json()["version"] == 1
    assert first.json()["definition"]["nodes"][0]["config"] == {"output": 1}
    problem_of(await api.http.get(f"{url}/versions/9"), 404)


async def test_put_refuses_to_rename_a_workflow(api: Api) -> None:
    await api.create(transform("fixed-name"))
    response = await api.http.put(
        f"{api.ws()}/workflows/fixed-name", json={"definition": transform("new-name")}
    )
    problem_of(response, 409)
    assert (await api.http.get(f"{api.ws()}/workflows/new-name")).status_code == 404
    versions = await api.http.get(f"{api.ws()}/workflows/fixed-name/versions")
    assert len(versions.json()) == 1


async def test_put_with_an_invalid_definition_is_a_422(api: Api) -> None:
    await api.create(transform("guarded"))
    bad = {"name": "guarded", "nodes": [{"id": "t", "type": "transform", "timeout": "x"}]}
    response = await api.http.put(f"{api.ws()}/workflows/guarded", json={"definition": bad})
    body = problem_of(response, 422)
    assert ("t", "timeout") in {(e["node_id"], e["path"]) for e in body["errors"]}


async def test_activate_pause_archive(api: Api) -> None:
    await api.create(transform("lifecycle"))
    url = f"{api.ws()}/workflows/lifecycle"
    paused = await api.http.post(f"{url}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    # paused stops triggers only: a manual execution still runs
    execution_id = await api.execute("lifecycle")
    assert (await api.until_finished(execution_id))["status"] == "succeeded"

    archived = await api.http.post(f"{url}/archive")
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    assert (await api.http.get(url)).json()["status"] == "archived"
    refused = await api.http.post(f"{url}/execute", json={"input": {}})
    problem_of(refused, 409)

    active = await api.http.post(f"{url}/activate")
    assert active.status_code == 200 and active.json()["status"] == "active"
    again = await api.http.post(f"{url}/execute", json={"input": {}})
    assert again.status_code == 202, again.text
    problem_of(await api.http.post(f"{api.ws()}/workflows/nope/archive"), 404)


async def test_stats_count_outcomes_durations_and_nodes(api: Api) -> None:
    await api.create(BRANCHY)
    ids = [await api.execute("branchy", {"fail": fail}) for fail in (False, False, True)]
    outcomes = [(await api.until_finished(i))["status"] for i in ids]
    assert outcomes == ["succeeded", "succeeded", "failed"]

    response = await api.http.get(f"{api.ws()}/workflows/branchy/stats")
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["executions"] == 3 and stats["finished"] == 3
    assert stats["by_status"] == {
        "succeeded": 2,
        "failed": 1,
        "cancelled": 0,
        "timed_out": 0,
        "queued": 0,
        "running": 0,
        "waiting": 0,
    }
    assert stats["success_rate"] == round(2 / 3, 4)
    assert stats["avg_duration_ms_all_time"] is not None
    assert stats["last_executed_at"] is not None
    durations = stats["durations"]
    assert durations["sample"] == 3
    assert 0 <= durations["p50_ms"] <= durations["p95_ms"]
    nodes = {n["node_id"]: n for n in stats["nodes"]}
    assert set(nodes) == {"check", "ok", "boom"}
    assert (nodes["check"]["attempts"], nodes["check"]["succeeded"]) == (3, 3)
    assert (nodes["ok"]["attempts"], nodes["ok"]["succeeded"]) == (2, 2)
    assert (nodes["boom"]["attempts"], nodes["boom"]["failed"]) == (1, 1)
    assert nodes["boom"]["success_rate"] == 0.0
    assert nodes["check"]["success_rate"] == 1.0
    assert nodes["check"]["p50_ms"] is not None


async def test_stats_count_an_execution_that_finishes_during_the_read(api: Api) -> None:
    """Workflow stats are one consistent reading: an execution finishing meanwhile is
    counted once, never dropped from both the finished and the live counts."""
    await api.create(waiting("in-flux"))
    execution_id = await api.execute("in-flux")
    await api.until_status(execution_id, "waiting")
    db = api.store.db

    def cancel_now() -> None:
        with db.write() as conn:
            controls.cancel(conn, db.dialect, api.owner.workspace_id, execution_id, now())

    with commit_between_statements(db.engine, live_count_query, cancel_now) as fired:
        response = await api.http.get(f"{api.ws()}/workflows/in-flux/stats")
    assert fired, "the stats read no longer counts live executions this way; update the test"
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["executions"] == 1, stats
    assert sum(stats["by_status"].values()) == 1, stats["by_status"]
