"""What the executions monitor and the execution page ask of the API: filters with several
statuses and a text search, cheap counts by status, bulk cancel/retry/replay with a dry run,
a summary of an execution with big step payloads left out, and their download."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import app as commands
from conveyor.api.routes import executions as routes
from conveyor.store.accounts import Role
from tests.api.conftest import Api, B
from tests.api.support import failing, problem_of, transform, waiting


def _ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


async def _get(api: Api, path: str, **params: Any) -> Any:
    response = await api.http.get(f"{api.ws()}{path}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def _bulk(api: Api, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = await api.http.post(f"{api.ws()}/executions/bulk", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def _finished(api: Api, workflow: str, input: Any = None) -> str:
    execution_id = await api.execute(workflow, input)
    await api.until_finished(execution_id)
    return execution_id


async def test_several_statuses_and_a_text_search_in_errors_and_inputs(api: Api) -> None:
    await api.create(transform("shop"))
    await api.create(failing("payments", "Card DECLINED for 100%_off"))
    await api.create(waiting("approvals"))
    ok = await _finished(api, "shop", {"customer": "Ada Lovelace", "note": 'say "hi"'})
    bad = await _finished(api, "payments", {"customer": "Grace"})
    held = await api.execute("approvals", {"customer": "ada"})
    await api.until_status(held, "waiting")

    several = await _get(api, "/executions", status=["failed", "waiting"])
    assert _ids(several) == [held, bad]
    assert several["stats"]["total"] == 2
    assert several["stats"]["by_status"] == {"failed": 1, "waiting": 1}
    assert _ids(await _get(api, "/executions", status="succeeded")) == [ok]  # one still works
    problem_of(await api.http.get(f"{api.ws()}/executions", params={"status": ["x"]}), 422)

    # the input, any case; the error, any case; together with other filters
    assert _ids(await _get(api, "/executions", q="ADA")) == [held, ok]
    assert _ids(await _get(api, "/executions", q="declined")) == [bad]
    assert _ids(await _get(api, "/executions", q="ada", status="waiting")) == [held]
    assert _ids(await _get(api, "/executions", q="ada", workflow="shop")) == [ok]
    # % and _ are literal; a quote matches the quote inside a stored string
    assert _ids(await _get(api, "/executions", q="100%_off")) == [bad]
    assert _ids(await _get(api, "/executions", q="100_%off")) == []
    assert _ids(await _get(api, "/executions", q="%")) == [bad]
    assert _ids(await _get(api, "/executions", q='say "hi"')) == [ok]
    searched = await _get(api, "/executions", q="ada")
    assert searched["stats"]["total"] == 2
    counted = await _get(api, "/executions/counts", q="ada")
    assert counted == {"total": 2, "live": 1, "by_status": {"succeeded": 1, "waiting": 1}}


async def test_a_search_looks_through_the_newest_executions_of_the_other_filters(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.store import history

    monkeypatch.setattr(history, "SEARCH_WINDOW", 2)
    await api.create(transform("window"))
    await api.create(transform("elsewhere"))
    first = await _finished(api, "window", {"tag": "needle"})
    second = await _finished(api, "window", {"tag": "needle"})
    await _finished(api, "elsewhere", {"tag": "hay"})
    await _finished(api, "elsewhere", {"tag": "hay"})
    # the two newest executions have no needle; a filter narrows the window to them
    assert _ids(await _get(api, "/executions", q="needle")) == []
    assert _ids(await _get(api, "/executions", q="needle", workflow="window")) == [second, first]
    created = (await _get(api, f"/executions/{second}"))["created_at"]
    older = await _get(api, "/executions", q="needle", created_before=created)
    assert _ids(older) == [first]


async def test_counts_by_status_for_a_filter(api: Api) -> None:
    await api.create(transform("ok"))
    await api.create(failing("bad"))
    await api.create(waiting("slow"))
    await _finished(api, "ok")
    await _finished(api, "bad")
    held = await api.execute("slow")
    await api.until_status(held, "waiting")
    everything = await _get(api, "/executions/counts")
    assert everything == {
        "total": 3,
        "live": 1,
        "by_status": {"succeeded": 1, "failed": 1, "waiting": 1},
    }
    assert (await _get(api, "/executions/counts", workflow="bad"))["by_status"] == {"failed": 1}
    live = await _get(api, "/executions/counts", status=["queued", "running", "waiting"])
    assert live == {"total": 1, "live": 1, "by_status": {"waiting": 1}}
    problem_of(await api.http.get(f"{api.ws()}/executions/counts", params={"limit": 1}), 400)


async def test_bulk_cancel_by_filter_after_a_dry_run(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "BULK_BATCH", 2)  # several batches
    await api.create(waiting("held"))
    await api.create(transform("done"))
    held = [await api.execute("held") for _ in range(5)]
    for execution_id in held:
        await api.until_status(execution_id, "waiting")
    finished = await _finished(api, "done")
    body = {"action": "cancel", "filter": {}, "dry_run": True}
    dry = await _bulk(api, body)
    assert dry == {
        "action": "cancel",
        "dry_run": True,
        "selected": 6,
        "eligible": 5,
        "limit": commands.BULK_LIMIT,
        "touched": 0,
        "skipped": 0,
        "errors_total": 0,
        "errors": [],
    }
    statuses = [(await api.store.execution_row(e))["status"] for e in held]
    assert statuses == ["waiting"] * 5, "a dry run changed something"

    done = await _bulk(api, {**body, "dry_run": False})
    assert (done["touched"], done["skipped"], done["errors_total"]) == (5, 0, 0)
    for execution_id in held:
        assert (await api.store.execution_row(execution_id))["status"] == "cancelled"
    assert (await api.store.execution_row(finished))["status"] == "succeeded"
    again = await _bulk(api, {**body, "dry_run": False})
    assert (again["eligible"], again["touched"]) == (0, 0)


async def test_bulk_retry_and_replay_by_ids(api: Api) -> None:
    await api.create(failing("flaky-wf"))
    await api.create(transform("fine"))
    failed = [await _finished(api, "flaky-wf", {"n": i}) for i in range(2)]
    succeeded = await _finished(api, "fine")
    unknown = "f" * 32
    ids = [*failed, succeeded, unknown, failed[0]]  # a repeat counts once

    dry = await _bulk(api, {"action": "retry", "ids": ids, "dry_run": True})
    assert (dry["selected"], dry["eligible"]) == (3, 2)
    retried = await _bulk(api, {"action": "retry", "ids": ids})
    assert (retried["touched"], retried["skipped"], retried["errors_total"]) == (2, 1, 1)
    assert retried["errors"] == [
        {"execution_id": unknown, "detail": f"execution '{unknown}' not found"}
    ]
    page = await _get(api, "/executions", trigger_type="retry")
    assert sorted(i["retry_of"] for i in page["items"]) == sorted(failed)
    for item in page["items"]:
        assert item["created_by"] == api.owner.user_id
        await api.until_finished(item["id"])

    # replay: finished ones only, from a node each version must have
    problem_of(
        await api.http.post(
            f"{api.ws()}/executions/bulk", json={"action": "replay", "ids": [succeeded]}
        ),
        400,
    )
    replayed = await _bulk(
        api, {"action": "replay", "ids": [succeeded, failed[0]], "from_node": "t"}
    )
    assert (replayed["touched"], replayed["errors_total"]) == (1, 1)
    assert "node 't' does not exist" in replayed["errors"][0]["detail"]
    assert replayed["errors"][0]["execution_id"] == failed[0]
    again = (await _get(api, "/executions", trigger_type="replay"))["items"]
    assert [i["retry_of"] for i in again] == [succeeded]


async def test_bulk_over_the_limit_is_refused_and_the_dry_run_says_so(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "BULK_LIMIT", 2)
    await api.create(failing("many-failures"))
    failed = [await _finished(api, "many-failures") for _ in range(3)]
    body = {"action": "retry", "filter": {"status": "failed"}}
    dry = await _bulk(api, {**body, "dry_run": True})
    assert (dry["eligible"], dry["limit"]) == (3, 2)
    refused = problem_of(await api.http.post(f"{api.ws()}/executions/bulk", json=body), 400)
    assert "more than the 2" in refused["detail"]
    assert (await _get(api, "/executions/counts"))["total"] == 3  # nothing was retried
    narrowed = await _bulk(api, {"action": "retry", "ids": failed[:2]})
    assert narrowed["touched"] == 2


async def test_bulk_needs_a_member_and_one_selection_in_this_workspace(api: Api) -> None:
    await api.create(waiting("guarded"))
    execution_id = await api.execute("guarded")
    await api.until_status(execution_id, "waiting")
    viewer = api.as_(await api.caller(Role.VIEWER))
    body = {"action": "cancel", "ids": [execution_id]}
    problem_of(await viewer.post(f"{api.ws()}/executions/bulk", json=body), 403)
    problem_of(
        await viewer.post(f"{api.ws()}/executions/bulk", json={**body, "dry_run": True}), 403
    )
    both = {**body, "filter": {}}
    problem_of(await api.http.post(f"{api.ws()}/executions/bulk", json=both), 422)
    problem_of(await api.http.post(f"{api.ws()}/executions/bulk", json={"action": "cancel"}), 422)
    # another workspace's owner names this execution: not found there, untouched
    other = api.as_(await api.caller(Role.OWNER, B))
    response = await other.post(f"{api.ws(B)}/executions/bulk", json=body)
    assert response.json()["errors_total"] == 1 and response.json()["touched"] == 0
    by_filter = await other.post(
        f"{api.ws(B)}/executions/bulk", json={"action": "cancel", "filter": {}}
    )
    assert by_filter.json()["selected"] == 0
    assert (await api.store.execution_row(execution_id))["status"] == "waiting"
    member = api.as_(await api.caller(Role.MEMBER))
    done = await member.post(f"{api.ws()}/executions/bulk", json=body)
    assert done.status_code == 200 and done.json()["touched"] == 1


async def test_a_summary_leaves_big_step_payloads_to_a_download(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "SUMMARY_BYTES", 1000)
    await api.create(transform("big"))
    big = {"blob": "x" * 5000}
    execution_id = await _finished(api, "big", big)
    full = await _get(api, f"/executions/{execution_id}")
    assert full["steps"][0]["output"] == big
    summary = await _get(api, f"/executions/{execution_id}", summary="true")
    step = summary["steps"][0]
    assert step["output"]["truncated"] is True
    assert 5000 < step["output"]["bytes"] < 5100
    assert step["logs"] == full["steps"][0]["logs"]  # small: kept
    assert summary["status"] == "succeeded" and summary["input"] == big

    response = await api.http.get(f"{api.ws()}/executions/{execution_id}/steps/t/output")
    assert response.status_code == 200
    assert response.json() == big
    assert response.headers["content-type"] == "application/json"
    disposition = response.headers["content-disposition"]
    assert disposition == f'attachment; filename="{execution_id}-t-1-output.json"'
    first = await api.http.get(
        f"{api.ws()}/executions/{execution_id[:12]}/steps/t/input", params={"attempt": 1}
    )
    assert first.status_code == 200 and first.json() == {"output": big}
    for missing in ("steps/nope/output", "steps/t/output?attempt=2"):
        problem_of(await api.http.get(f"{api.ws()}/executions/{execution_id}/{missing}"), 404)
    problem_of(await api.http.get(f"{api.ws()}/executions/{execution_id}/steps/t/secrets"), 422)
    problem_of(await api.http.get(f"{api.ws(B)}/executions/{execution_id}/steps/t/output"), 404)
