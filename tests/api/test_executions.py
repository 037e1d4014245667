"""Executions over HTTP: execute, read (progress, steps, live durations), list with filters,
cursors and statistics, and the run controls (cancel, retry, replay, pause, resume, signal)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from conveyor.store import controls
from conveyor.store.accounts import Role
from tests.api.conftest import Api
from tests.api.support import (
    commit_between_statements,
    failing,
    gated,
    live_count_query,
    problem_of,
    transform,
    waiting,
)


def now() -> datetime:
    return datetime.now(UTC)


def _ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


async def _get(api: Api, execution_id: str) -> dict[str, Any]:
    response = await api.http.get(f"{api.ws()}/executions/{execution_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _list(api: Api, url: str | None = None, **params: Any) -> dict[str, Any]:
    response = await api.http.get(url or f"{api.ws()}/executions", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_execute_answers_202_with_links(api: Api) -> None:
    created = await api.create(transform("hello", "hi {{ input.name }}"))
    response = await api.http.post(
        f"{api.ws()}/workflows/hello/execute", json={"input": {"name": "ann"}}
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    execution_id = accepted["execution_id"]
    assert accepted["created"] is True
    assert accepted["status"] == "queued"
    assert accepted["workflow_id"] == created["id"]
    assert accepted["version"] == 1
    base = f"{api.ws()}/executions/{execution_id}"
    assert accepted["links"] == {
        "self": base,
        "stream": f"{base}/stream",
        "cancel": f"{base}/cancel",
    }
    finished = await api.until_finished(execution_id)
    assert finished["status"] == "succeeded"
    detail = (await api.http.get(accepted["links"]["self"])).json()
    assert detail["result"] == {"t": "hi ann"}
    assert detail["trigger_type"] == "api"
    assert detail["created_by"] == api.owner.user_id


async def test_execute_refuses_unknown_workflows_versions_and_bad_bodies(api: Api) -> None:
    await api.create(transform("strict"))
    url = f"{api.ws()}/workflows/strict/execute"
    problem_of(await api.http.post(f"{api.ws()}/workflows/nope/execute", json={}), 404)
    problem_of(await api.http.post(url, json={"version": 9}), 404)
    problem_of(await api.http.post(url, json={"priority": 5000}), 422)
    problem_of(await api.http.post(url, json={"inputs": {}}), 422)


async def test_an_idempotency_key_returns_the_same_execution(api: Api) -> None:
    await api.create(transform("once"))
    url = f"{api.ws()}/workflows/once/execute"
    first = await api.http.post(url, json={"input": {"n": 1}, "idempotency_key": "order-17"})
    again = await api.http.post(url, json={"input": {"n": 1}, "idempotency_key": "order-17"})
    other = await api.http.post(url, json={"input": {"n": 1}, "idempotency_key": "order-18"})
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["created"] is True
    assert again.json()["created"] is False
    assert again.json()["execution_id"] == first.json()["execution_id"]
    assert other.json()["execution_id"] != first.json()["execution_id"]
    listed = await _list(api, workflow="once")
    assert len(listed["items"]) == 2


async def test_a_list_body_enqueues_a_batch_each_item_answering_for_itself(api: Api) -> None:
    created = await api.create(transform("batch", "hi {{ input.name }}"))
    url = f"{api.ws()}/workflows/batch/execute"
    first = await api.http.post(url, json=[{"input": {"name": "ann"}, "idempotency_key": "k1"}])
    assert first.status_code == 202, first.text
    items = [
        {"input": {"name": "ann"}, "idempotency_key": "k1"},  # already used: the same one
        {"input": {"name": "bob"}, "idempotency_key": "k2", "priority": 5},
        {"input": {"name": "cyd"}, "idempotency_key": "x" * 10},
    ]
    response = await api.http.post(url, json=items[:3])
    assert response.status_code == 202, response.text
    batch = response.json()
    assert (batch["workflow_id"], batch["version"]) == (created["id"], 1)
    assert (batch["created"], batch["refused"]) == (2, 0)
    queued = batch["items"]
    assert [i["status"] for i in queued] == ["queued"] * 3
    assert queued[0]["execution_id"] == first.json()["items"][0]["execution_id"]
    assert [i["created"] for i in queued] == [False, True, True]
    for item in queued[1:]:
        done = await api.until_finished(item["execution_id"])
        assert done["status"] == "succeeded"
    detail = await _get(api, queued[1]["execution_id"])
    assert (detail["result"], detail["priority"]) == ({"t": "hi bob"}, 5)
    assert detail["trigger_type"] == "api"


async def test_a_batch_refuses_an_item_alone_and_names_one_version(api: Api) -> None:
    await api.create(
        {
            **transform("typed", 1),
            "input": {
                "type": "object",
                "required": ["n"],
                "properties": {"n": {"type": "integer"}},
            },
        }
    )
    url = f"{api.ws()}/workflows/typed/execute"
    response = await api.http.post(url, json=[{"input": {"n": 1}}, {"input": {"n": "one"}}])
    assert response.status_code == 202, response.text
    items = response.json()["items"]
    assert [i["status"] for i in items] == ["queued", "refused"]
    assert items[1]["problem"]["status"] == 422 and items[1]["problem"]["errors"]
    assert response.json()["refused"] == 1
    problem_of(await api.http.post(url, json=[{"version": 1}, {"version": 2}]), 400)
    problem_of(await api.http.post(url, json=[]), 422)
    # A problem names the fields of the shape sent, an object's or a list item's.
    bad = problem_of(await api.http.post(url, json=[{"input": {"n": 1}, "inputs": {}}]), 422)
    assert [e["path"] for e in bad["errors"]] == ["body.0.inputs"], bad
    bad = problem_of(await api.http.post(url, json={"inputs": {}}), 422)
    assert [e["path"] for e in bad["errors"]] == ["body.inputs"], bad
    problem_of(await api.http.post(f"{api.ws()}/workflows/nope/execute", json=[{}]), 404)
    listed = await _list(api, workflow="typed")
    assert len(listed["items"]) == 1


async def test_execute_a_pinned_version(api: Api) -> None:
    await api.create(transform("pinned", 1))
    await api.create(transform("pinned", 2))
    response = await api.http.post(
        f"{api.ws()}/workflows/pinned/execute", json={"input": {}, "version": 1}
    )
    assert response.status_code == 202 and response.json()["version"] == 1
    await api.until_finished(response.json()["execution_id"])
    detail = await _get(api, response.json()["execution_id"])
    assert detail["version"] == 1 and detail["result"] == {"t": 1}


async def test_get_shows_progress_and_every_step(api: Api) -> None:
    row = await api.run(failing("breaks", "kaboom"), {"x": 1})
    detail = await _get(api, row["id"])
    assert detail["status"] == "failed"
    assert detail["workflow_name"] == "breaks" and detail["version"] == 1
    assert detail["input"] == {"x": 1}
    assert detail["error"]["node_id"] == "boom" and detail["error"]["message"] == "kaboom"
    assert detail["progress"] == {
        "total": 2,
        "completed": 2,
        "succeeded": 1,
        "failed": 1,
        "skipped": 0,
        "running": 0,
        "percentage": 100.0,
    }
    assert detail["started_at"] and detail["finished_at"]
    assert detail["duration_ms"] is not None and detail["duration_ms"] >= 0
    steps = {s["node_id"]: s for s in detail["steps"]}
    assert set(steps) == {"first", "boom"}
    first, boom = steps["first"], steps["boom"]
    assert (first["status"], first["attempt"], first["node_type"]) == ("succeeded", 1, "transform")
    assert first["input"] == {"output": {"x": 1}}
    assert first["output"] == {"x": 1}
    assert first["error"] is None
    assert (boom["status"], boom["attempt"], boom["node_type"]) == ("failed", 1, "fail")
    assert boom["output"] is None
    assert boom["error"]["message"] == "kaboom"
    for step in (first, boom):
        assert step["started_at"] and step["finished_at"]
        assert step["duration_ms"] is not None and step["duration_ms"] >= 0
    # an id prefix finds the execution too
    assert (await _get(api, row["id"][:20]))["id"] == row["id"]


async def test_get_shows_step_indexes_and_the_traceback_of_an_unexpected_exception(
    api: Api,
) -> None:
    definition = {
        "name": "crashes",
        "settings": {"retry": {"max_attempts": 1}},  # the first call fails for good
        "nodes": [
            {"id": "first", "type": "transform", "config": {"output": "{{ input }}"}},
            {"id": "crash", "type": "test.flaky", "needs": ["first"], "config": {"key": "k"}},
        ],
    }
    row = await api.run(definition, {"x": 1})
    detail = await _get(api, row["id"])
    steps = {s["node_id"]: s for s in detail["steps"]}
    assert (steps["first"]["step_index"], steps["crash"]["step_index"]) == (1, 2)
    error = steps["crash"]["error"]
    assert (error["type"], error["step_index"]) == ("RuntimeError", 2)
    assert "in flaky" in error["traceback"]
    assert error["traceback"].endswith("RuntimeError: first call of k fails")
    assert detail["error"]["traceback"] == error["traceback"]
    problem_of(await api.http.get(f"{api.ws()}/executions/{'0' * 32}"), 404)


async def test_duration_is_live_while_running_and_fixed_once_finished(api: Api) -> None:
    await api.create(gated("slow", "slow"))
    execution_id = await api.execute("slow")
    await api.until_event(execution_id, "step.started")
    running = await _get(api, execution_id)
    later = await _get(api, execution_id)
    assert running["status"] == later["status"] == "running"
    assert running["finished_at"] is None
    assert running["duration_ms"] is not None
    assert later["duration_ms"] > running["duration_ms"]
    hold = next(s for s in later["steps"] if s["node_id"] == "hold")
    assert hold["status"] == "running" and hold["finished_at"] is None
    assert hold["duration_ms"] is not None
    assert later["progress"]["running"] == 1 and later["progress"]["completed"] == 0

    api.gate("slow").set()
    await api.until_finished(execution_id)
    done = await _get(api, execution_id)
    assert done["status"] == "succeeded"
    assert (await _get(api, execution_id))["duration_ms"] == done["duration_ms"]
    assert done["progress"]["percentage"] == 100.0


async def test_duration_keeps_counting_while_a_wait_node_waits(api: Api) -> None:
    await api.create(
        {"name": "napping", "nodes": [{"id": "nap", "type": "wait", "config": {"duration": "1h"}}]}
    )
    execution_id = await api.execute("napping")
    await api.until_status(execution_id, "waiting")
    first = await _get(api, execution_id)
    second = await _get(api, execution_id)
    assert first["status"] == "waiting" and first["finished_at"] is None
    assert first["blocked_reason"] is not None
    assert first["duration_ms"] is not None
    assert second["duration_ms"] > first["duration_ms"]
    assert first["progress"]["completed"] == 0 and first["progress"]["percentage"] == 0.0


async def test_get_execute_is_the_latest_execution(api: Api) -> None:
    await api.create(transform("latest"))
    url = f"{api.ws()}/workflows/latest/execute"
    problem_of(await api.http.get(url), 404)
    first = await api.execute("latest", {"n": 1})
    second = await api.execute("latest", {"n": 2})
    await api.until_finished(second)
    response = await api.http.get(url)
    assert response.status_code == 200, response.text
    latest = response.json()
    assert latest["id"] == second != first
    assert latest["input"] == {"n": 2}
    assert [s["node_id"] for s in latest["steps"]] == ["t"]


async def test_list_filters_and_stats(api: Api) -> None:
    await api.create(transform("alpha"))
    beta = await api.create(failing("beta", "Kaboom-7F3"))
    member = await api.caller(Role.MEMBER)
    as_member = api.as_(member)
    e1 = await api.execute("alpha")
    await api.until_finished(e1)
    e2 = await api.execute("beta")
    await api.until_finished(e2)
    e3 = await api.execute("alpha", client=as_member)
    await api.until_finished(e3)
    e4 = (await api.conveyor.execute("alpha")).execution_id  # trigger_type manual, no user
    await api.until_finished(e4)
    created = {e: (await _get(api, e))["created_at"] for e in (e1, e2, e3, e4)}

    everything = await _list(api)
    assert _ids(everything) == [e4, e3, e2, e1]  # newest first
    assert everything["has_more"] is False
    stats = everything["stats"]
    assert stats["total"] == 4
    assert stats["by_status"] == {"succeeded": 3, "failed": 1}
    assert stats["success_rate"] == 0.75
    assert stats["sample"] == 4
    assert 0 <= stats["p50_ms"] <= stats["p95_ms"]
    assert stats["avg_ms"] is not None

    failed = await _list(api, status="failed")
    assert _ids(failed) == [e2]
    assert failed["stats"]["total"] == 1 and failed["stats"]["success_rate"] == 0.0
    assert set(_ids(await _list(api, status="succeeded"))) == {e1, e3, e4}
    assert _ids(await _list(api, status="running")) == []
    assert _ids(await _list(api, workflow="alpha")) == [e4, e3, e1]
    assert _ids(await _list(api, workflow=beta["id"])) == [e2]
    assert _ids(await _list(api, trigger_type="manual")) == [e4]
    assert _ids(await _list(api, trigger_type="api")) == [e3, e2, e1]
    assert _ids(await _list(api, user=member.user_id)) == [e3]
    assert _ids(await _list(api, user=api.owner.user_id)) == [e2, e1]
    assert _ids(await _list(api, created_after=created[e3])) == [e4, e3]
    assert _ids(await _list(api, created_before=created[e3])) == [e2, e1]
    assert _ids(await _list(api, created_after=created[e2], created_before=created[e4])) == [
        e3,
        e2,
    ]
    assert _ids(await _list(api, error="kaboom-7f3")) == [e2]
    assert _ids(await _list(api, error="no such error text")) == []
    both = await _list(api, workflow="alpha", user=member.user_id)
    assert _ids(both) == [e3] and both["stats"]["total"] == 1
    assert (await _list(api, stats="false")).get("stats") is None

    per_workflow = await _list(api, f"{api.ws()}/workflows/alpha/executions")
    assert _ids(per_workflow) == [e4, e3, e1]
    assert per_workflow["stats"]["by_status"] == {"succeeded": 3}
    scoped = await _list(api, f"{api.ws()}/workflows/alpha/executions", trigger_type="manual")
    assert _ids(scoped) == [e4]
    history = await api.http.get(f"{api.ws()}/workflows/alpha/history", params={"limit": 2})
    assert history.status_code == 200
    assert [h["id"] for h in history.json()] == [e4, e3]
    assert all(h["steps"] for h in history.json())

    problem_of(await api.http.get(f"{api.ws()}/executions", params={"status": "bogus"}), 422)
    problem_of(await api.http.get(f"{api.ws()}/executions", params={"workflow": "nope"}), 404)


async def test_cursor_pagination_over_executions(api: Api) -> None:
    await api.create(transform("many"))
    await api.create(transform("other-wf"))
    made = [await api.execute("many", {"i": i}) for i in range(5)]
    await api.execute("other-wf")
    for execution_id in made:  # a stable total (stats under change: test below)
        await api.until_finished(execution_id)
    seen: list[str] = []
    pages = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "workflow": "many"}
        if cursor:
            params["cursor"] = cursor
        page = await _list(api, **params)
        pages.append(page)
        assert page["stats"]["total"] == 5  # stats cover the filter, not the page
        seen += _ids(page)
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
        assert len(pages) < 10, "pagination does not end"
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert seen == list(reversed(made))  # newest first, no duplicates, no gaps

    for bad in ("garbage", base64.urlsafe_b64encode(b"2026-01-01T00:00:00|x").decode()):
        problem_of(await api.http.get(f"{api.ws()}/executions", params={"cursor": bad}), 400)


async def test_list_stats_count_an_execution_that_finishes_during_the_read(api: Api) -> None:
    """The stats block is one consistent reading: an execution that finishes while it is
    being computed is counted once (before or after), never dropped."""
    await api.create(waiting("in-flux"))
    execution_id = await api.execute("in-flux")
    await api.until_status(execution_id, "waiting")
    db = api.store.db

    def cancel_now() -> None:
        with db.write() as conn:
            controls.cancel(conn, db.dialect, api.owner.workspace_id, execution_id, now())

    with commit_between_statements(db.engine, live_count_query, cancel_now) as fired:
        page = await _list(api, workflow="in-flux")
    assert fired, "the stats read no longer counts live executions this way; update the test"
    assert (await api.store.execution_row(execution_id))["status"] == "cancelled"
    assert page["stats"]["total"] == 1, page["stats"]
    assert page["stats"]["by_status"] in ({"waiting": 1}, {"cancelled": 1}), page["stats"]


async def test_cancel_a_waiting_execution_with_post_and_with_delete(api: Api) -> None:
    await api.create(waiting("approval"))
    by_post = await api.execute("approval")
    by_delete = await api.execute("approval")
    await api.until_status(by_post, "waiting")
    await api.until_status(by_delete, "waiting")

    response = await api.http.post(f"{api.ws()}/executions/{by_post[:24]}/cancel")
    assert response.status_code == 200, response.text
    assert response.json() == {"execution_id": by_post, "status": "cancelled"}
    response = await api.http.delete(f"{api.ws()}/executions/{by_delete}")
    assert response.status_code == 200, response.text
    assert response.json() == {"execution_id": by_delete, "status": "cancelled"}

    for execution_id in (by_post, by_delete):
        detail = await _get(api, execution_id)
        assert detail["status"] == "cancelled"
        assert detail["finished_at"] is not None
        assert detail["error"]["type"] == "cancelled"
        approve = next(s for s in detail["steps"] if s["node_id"] == "approve")
        assert approve["status"] == "cancelled"
        assert "execution.cancelled" in await api.event_types(execution_id)
    again = await api.http.post(f"{api.ws()}/executions/{by_post}/cancel")
    assert again.json()["status"] == "cancelled"  # idempotent
    problem_of(await api.http.post(f"{api.ws()}/executions/{'0' * 32}/cancel"), 404)


async def test_cancel_a_running_execution(api: Api) -> None:
    await api.create(gated("busy", "never-opened"))
    execution_id = await api.execute("busy")
    await api.until_event(execution_id, "step.started")
    response = await api.http.post(f"{api.ws()}/executions/{execution_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "running"  # its worker stops it
    row = await api.until_finished(execution_id, within=5)
    assert row["status"] == "cancelled"


async def test_retry_a_failed_execution_reuses_what_succeeded(api: Api) -> None:
    definition = {
        "name": "retryable",
        "settings": {"retry": {"max_attempts": 1}},  # fails at once; retried by hand
        "nodes": [
            {"id": "first", "type": "transform", "config": {"output": "{{ input.n }}"}},
            {"id": "flaky", "type": "test.flaky", "needs": ["first"], "config": {"key": "r"}},
            {"id": "last", "type": "transform", "needs": ["flaky"], "config": {"output": 1}},
        ],
    }
    failed = await api.run(definition, {"n": 3})
    assert failed["status"] == "failed"
    response = await api.http.post(f"{api.ws()}/executions/{failed['id']}/retry")
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["created"] is True and accepted["status"] == "queued"
    retried_id = accepted["execution_id"]
    assert retried_id != failed["id"]
    assert accepted["links"]["self"].endswith(f"/executions/{retried_id}")
    assert (await api.until_finished(retried_id))["status"] == "succeeded"
    retried = await _get(api, retried_id)
    assert retried["retry_of"] == failed["id"]
    assert retried["trigger_type"] == "retry"
    assert retried["input"] == {"n": 3}
    first = next(s for s in retried["steps"] if s["node_id"] == "first")
    assert any("reused" in entry["message"] for entry in first["logs"])
    assert api.calls["r"] == 2
    problem_of(await api.http.post(f"{api.ws()}/executions/{retried_id}/retry"), 409)


async def test_replay_from_a_node_with_new_input(api: Api) -> None:
    definition = {
        "name": "replayable",
        "nodes": [
            {"id": "a", "type": "transform", "config": {"output": "{{ input.v }}"}},
            {
                "id": "b",
                "type": "transform",
                "needs": ["a"],
                "config": {"output": "{{ input.v }}:{{ nodes.a.output }}"},
            },
        ],
    }
    original = await api.run(definition, {"v": 1})
    assert original["result"] == {"b": "1:1"}
    url = f"{api.ws()}/executions/{original['id']}/replay"
    response = await api.http.post(url, json={"from_node": "b", "input": {"v": 2}})
    assert response.status_code == 202, response.text
    replayed_id = response.json()["execution_id"]
    assert (await api.until_finished(replayed_id))["status"] == "succeeded"
    replayed = await _get(api, replayed_id)
    assert replayed["input"] == {"v": 2}
    assert replayed["result"] == {"b": "2:1"}  # a reused, b ran again with the new input

    problem_of(await api.http.post(url, json={"from_node": "nope"}), 400)
    problem_of(await api.http.post(url, json={}), 422)

    await api.create(waiting("still-waiting"))
    waiting_id = await api.execute("still-waiting")
    await api.until_status(waiting_id, "waiting")
    busy = await api.http.post(
        f"{api.ws()}/executions/{waiting_id}/replay", json={"from_node": "after"}
    )
    problem_of(busy, 409)


async def test_replay_on_the_current_version(api: Api) -> None:
    await api.create(transform("moving", 1))
    original = await api.run(transform("moving", 1))
    await api.create(transform("moving", 2))
    url = f"{api.ws()}/executions/{original['id']}/replay"
    pinned = await api.http.post(url, json={"from_node": "t"})
    current = await api.http.post(url, json={"from_node": "t", "version": "current"})
    assert pinned.status_code == current.status_code == 202
    assert pinned.json()["version"] == 1 and current.json()["version"] == 2
    await api.until_finished(current.json()["execution_id"])
    assert (await _get(api, current.json()["execution_id"]))["result"] == {"t": 2}


async def test_pause_holds_the_next_step_until_resume(api: Api) -> None:
    await api.create(gated("pausable", "pausable"))
    execution_id = await api.execute("pausable")
    await api.until_event(execution_id, "step.started")
    url = f"{api.ws()}/executions/{execution_id}"
    paused = await api.http.post(f"{url}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json() == {"execution_id": execution_id, "status": "paused"}
    assert "execution.paused" in await api.event_types(execution_id)

    async def taken() -> bool:  # the worker running it has noticed the pause
        control = api.app.state.worker.runner.control(execution_id)
        return control is not None and control.pause

    await api.waiter.until(taken, "the worker to take the pause")
    api.gate("pausable").set()
    await api.until_status(execution_id, "waiting")
    held = await _get(api, execution_id)
    assert held["blocked_reason"] is not None and held["blocked_reason"].startswith("paused")
    assert held["paused"] is True
    steps = {s["node_id"]: s["status"] for s in held["steps"]}
    assert steps == {"hold": "succeeded"}, steps

    resumed = await api.http.post(f"{url}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["execution_id"] == execution_id
    assert (await api.until_finished(execution_id))["status"] == "succeeded"
    assert "execution.unpaused" in await api.event_types(execution_id)
    problem_of(await api.http.post(f"{url}/pause"), 409)
    problem_of(await api.http.post(f"{url}/resume"), 409)


async def test_no_step_starts_after_a_pause_was_acknowledged(api: Api) -> None:
    """Once POST .../pause has answered, the execution starts no new step: a step that
    finishes right after the answer must not be followed by the next one."""
    await api.create(gated("pause-race", "pause-race"))
    execution_id = await api.execute("pause-race")
    await api.until_event(execution_id, "step.started")
    paused = await api.http.post(f"{api.ws()}/executions/{execution_id}/pause")
    assert paused.status_code == 200, paused.text
    api.gate("pause-race").set()  # the running step finishes just after the pause
    await api.until_status(execution_id, "waiting", "succeeded")
    detail = await _get(api, execution_id)
    started = [s["node_id"] for s in detail["steps"]]
    assert started == ["hold"], f"steps started after the pause: {started}"
    assert detail["status"] == "waiting"


async def test_a_signal_resumes_a_wait_for_event(api: Api) -> None:
    await api.create(waiting("approve-me", event="approved"))
    execution_id = await api.execute("approve-me")
    await api.until_status(execution_id, "waiting")
    detail = await _get(api, execution_id)
    assert detail["blocked_reason"].startswith("waiting for signal approved")
    waits = [(s["status"], s["wait_signal"]) for s in detail["steps"] if s["wait_signal"]]
    assert waits == [("waiting", "approved")]
    url = f"{api.ws()}/executions/{execution_id}/signal"
    sent = await api.http.post(url, json={"name": "approved", "data": {"by": "ann"}})
    assert sent.status_code == 200, sent.text
    assert sent.json() == {"execution_id": execution_id, "status": "signalled"}
    finished = await api.until_finished(execution_id)
    assert finished["status"] == "succeeded"
    assert (await _get(api, execution_id))["result"] == {"after": "by ann"}
    problem_of(await api.http.post(url, json={"name": "approved"}), 409)
    problem_of(await api.http.post(url, json={"name": ""}), 422)


async def test_a_reserved_signal_name_is_a_400(api: Api) -> None:
    await api.create(waiting("reserved"))
    execution_id = await api.execute("reserved")
    await api.until_status(execution_id, "waiting")
    response = await api.http.post(
        f"{api.ws()}/executions/{execution_id}/signal", json={"name": "child:forged"}
    )
    problem_of(response, 400)


async def test_events_in_order_and_after_a_sequence_number(api: Api) -> None:
    row = await api.run(failing("eventful"))
    url = f"{api.ws()}/executions/{row['id']}/events"
    response = await api.http.get(url)
    assert response.status_code == 200
    events = response.json()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    assert types[0] == "execution.queued" and types[-1] == "execution.failed"
    assert "step.started" in types and "step.failed" in types
    failed_step = next(e for e in events if e["type"] == "step.failed")
    assert failed_step["data"]["node_id"] == "boom"
    assert all(e["created_at"] for e in events)
    tail = (await api.http.get(url, params={"after": 3})).json()
    assert tail == events[3:]
    assert (await api.http.get(url, params={"after": len(events)})).json() == []
    problem_of(await api.http.get(url, params={"after": -1}), 422)
    problem_of(await api.http.get(f"{api.ws()}/executions/{'0' * 32}/events"), 404)


async def test_user_stats_count_executions_per_user(api: Api) -> None:
    member = await api.caller(Role.MEMBER)
    await api.create(transform("counted"))
    await api.until_finished(await api.execute("counted"))
    await api.until_finished(await api.execute("counted", client=api.as_(member)))
    await api.until_finished(await api.execute("counted", client=api.as_(member)))
    response = await api.http.get(f"{api.ws()}/stats/users")
    assert response.status_code == 200
    per_user = {r["user_id"]: r["executions"] for r in response.json()}
    assert per_user == {member.user_id: 2, api.owner.user_id: 1}
