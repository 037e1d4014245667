"""Operations: liveness, readiness, Prometheus metrics (for the scrape token, or a
workspace's owner, scoped to it), and a database outage answering 503 with Retry-After
(never a 500)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conveyor.api.app import create_app
from conveyor.app import Conveyor
from conveyor.store import accounts
from conveyor.store.accounts import Role
from tests.api.conftest import PASSWORD, Api, B, Caller
from tests.api.support import (
    API,
    SSEStream,
    StreamingTransport,
    failing,
    gated,
    problem_of,
    transform,
)
from tests.support import admin

SCRAPE = "the-operators-scrape-token"
BY_TOKEN = {"Authorization": f"Bearer {SCRAPE}"}


async def session_token(api: Api, caller: Caller) -> str:
    store = api.store
    return await store.write(
        accounts.create_session, caller.user_id, store.clock.now(), timedelta(hours=1)
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def test_healthz_and_readyz(api: Api) -> None:
    client = api.new_client()
    live = await client.get("/healthz")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}


async def test_metrics_in_prometheus_text(api: Api) -> None:
    api.app.state.metrics_token = SCRAPE
    client = api.new_client(BY_TOKEN)
    await api.run(transform("m-ok"))
    await api.run(transform("m-ok"))
    await api.run(failing("m-bad"))
    limited = {
        **gated("m-limited", "m-limited"),
        "settings": {"concurrency": {"limit": 1}},
    }
    await api.create(limited)
    first = await api.execute("m-limited")
    second = await api.execute("m-limited")
    await api.until_event(first, "step.started")

    async def scraped() -> dict[Any, float] | None:
        response = await client.get("/metrics")
        assert response.status_code == 200
        found = samples(response.text)
        busy = found[("conveyor_queue_depth", ())] == 1
        return found if busy and found[("conveyor_running_executions", ())] == 1 else None

    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    for name in ("conveyor_executions", "conveyor_queue_depth", "conveyor_step_duration_seconds"):
        assert name in response.text
    found = await api.waiter.until(scraped, "one running and one queued in the metrics")
    assert found[("conveyor_executions", (("status", "succeeded"),))] == 2
    assert found[("conveyor_executions", (("status", "failed"),))] == 1
    assert found[("conveyor_executions", (("status", "running"),))] == 1
    assert found[("conveyor_executions", (("status", "queued"),))] == 1
    assert found[("conveyor_database_up", ())] == 1
    assert found[("conveyor_worker_slots", (("state", "total"),))] == 8
    assert found[("conveyor_worker_slots", (("state", "in_use"),))] == 1
    # The embedded worker's group commits: every finished transform went through one.
    commits = found[("conveyor_group_commit_transitions_count", ())]
    assert commits >= 1
    assert found[("conveyor_group_commit_transitions_sum", ())] >= commits
    assert found[("conveyor_group_commit_transitions_bucket", (("le", "+Inf"),))] == commits
    # finished steps so far: 2 x transform, 1 x (transform + fail)
    assert found[("conveyor_step_duration_seconds_bucket", (("le", "+Inf"),))] == 4
    buckets = sorted(
        (float(labels[0][1]), value)
        for (name, labels), value in found.items()
        if name == "conveyor_step_duration_seconds_bucket"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert found[("conveyor_step_duration_seconds_gsum", ())] >= 0

    api.gate("m-limited").set()
    await api.until_finished(first)
    await api.until_finished(second)
    after = samples((await client.get("/metrics")).text)
    assert after[("conveyor_executions", (("status", "succeeded"),))] == 4
    assert after[("conveyor_queue_depth", ())] == 0


async def test_metrics_need_the_scrape_token_or_an_owner_who_sees_their_workspace(
    api: Api,
) -> None:
    api.app.state.metrics_token = SCRAPE
    await api.run(transform("counted"))
    owner_b = await api.caller(Role.OWNER, B)
    as_b = api.as_(owner_b)
    made = await as_b.post(f"{api.ws(B)}/workflows", json={"definition": transform("in-b")})
    assert made.status_code == 201, made.text
    for _ in range(2):
        await api.until_finished(await api.execute("in-b", client=as_b, workspace=B))

    for headers in (
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Bearer {SCRAPE}x"},
        {"Cookie": "conveyor_session=forged"},
    ):
        refused = await api.new_client(headers).get("/metrics")
        problem_of(refused, 401)
        assert "Bearer" in refused.headers["www-authenticate"]
    for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
        problem_of(await api.as_(await api.caller(role)).get("/metrics"), 403)

    def succeeded(response: httpx.Response) -> float:
        assert response.status_code == 200, response.text
        return samples(response.text)[("conveyor_executions", (("status", "succeeded"),))]

    everything = await api.new_client(BY_TOKEN).get("/metrics")
    assert succeeded(everything) == 3
    assert "conveyor_worker_slots" in everything.text
    mine = await api.http.get("/metrics")
    assert succeeded(mine) == 1
    assert samples(mine.text).get(("conveyor_worker_slots", (("state", "total"),))) is None
    assert succeeded(await as_b.get("/metrics")) == 2
    # An owner of two workspaces names one; B's owner cannot read A's.
    store = api.store
    await store.write(
        accounts.set_role, api.owner.user_id, owner_b.workspace_id, Role.OWNER, store.clock.now()
    )
    session = {"Cookie": f"conveyor_session={await session_token(api, api.owner)}"}
    both = api.new_client(session)
    problem_of(await both.get("/metrics"), 400)
    assert succeeded(await both.get(f"/metrics?workspace={B}")) == 2
    problem_of(await as_b.get("/metrics?workspace=default"), 404)


@pytest.fixture
async def doomed(conveyor: Conveyor) -> AsyncIterator[tuple[httpx.AsyncClient, Conveyor, str]]:
    """An API on a PostgreSQL database the test may take away, and an owner's key."""
    store = conveyor.store
    now = store.clock.now()
    user_id = await store.write(accounts.create_user, "ops@example.com", PASSWORD, now)
    await store.write(accounts.set_role, user_id, conveyor.workspace_id, Role.OWNER, now)
    key, _ = await store.write(
        accounts.create_api_key, conveyor.workspace_id, user_id, "ops", Role.OWNER, now
    )
    await conveyor.apply(transform("there"))
    app = create_app(conveyor, metrics_token=SCRAPE)
    async with httpx.AsyncClient(
        transport=StreamingTransport(app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        yield client, conveyor, str(conveyor.store.db.url.database)


def assert_unavailable(response: httpx.Response) -> None:
    body = problem_of(response, 503)
    assert response.headers.get("retry-after") == "5", response.headers
    assert "database" in body["detail"]


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_lost_database_answers_503_with_retry_after(doomed: Any) -> None:
    client, _, database = doomed
    ws = f"{API}/workspaces/default"
    assert (await client.get(f"{ws}/workflows")).status_code == 200  # pool has connections
    admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    admin(f"DROP DATABASE {database} WITH (FORCE)")
    for method, url, body in (
        ("GET", f"{ws}/workflows", None),  # a pooled connection that was terminated
        ("GET", f"{ws}/workflows", None),  # a new connection to a database that is gone
        ("POST", f"{ws}/workflows/there/execute", {"input": {}}),
        ("GET", f"{ws}/executions", None),
        ("GET", "/readyz", None),
    ):
        response = await client.request(method, url, json=body)
        assert_unavailable(response)
    assert (await client.get("/healthz")).status_code == 200
    metrics = await client.get("/metrics", headers=BY_TOKEN)  # the token needs no database
    assert metrics.status_code == 200
    assert samples(metrics.text)[("conveyor_database_up", ())] == 0


@pytest.mark.parametrize("backend", ["postgres"])
async def test_terminated_connections_are_a_503_then_recover(doomed: Any) -> None:
    client, _, database = doomed
    ws = f"{API}/workspaces/default"
    assert (await client.get(f"{ws}/workflows")).status_code == 200
    admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    first = await client.get(f"{ws}/workflows")
    if first.status_code != 200:
        assert_unavailable(first)  # a dead pooled connection: retry later, never a 500
    again = await client.get(f"{ws}/workflows")
    assert again.status_code == 200, again.text
    assert [w["name"] for w in again.json()["items"]] == ["there"]


async def test_metrics_count_what_live_streams_were_sent(api: Api) -> None:
    """The live feed's reads and the streams' writes, bytes and CPU, and the streams open
    now: the whole server's numbers (the scrape token), not a workspace owner's."""
    api.app.state.metrics_token = SCRAPE
    client = api.new_client(BY_TOKEN)
    await api.create(gated("watched", "watched"))

    def live(found: dict[Any, float]) -> dict[str, float]:
        return {
            name.removeprefix("conveyor_live_"): value
            for (name, _), value in found.items()
            if name.startswith("conveyor_live_") and not name.endswith("_created")
        }

    before = live(samples((await client.get("/metrics")).text))
    assert before["subscribers"] == 0
    async with SSEStream(api.http, f"{api.ws()}/stream") as stream:
        await stream.until(lambda e: e.event == "connected")
        execution_id = await api.execute("watched")
        await stream.until(lambda e: e.event == "step.started")
        during = live(samples((await client.get("/metrics")).text))
        assert during["subscribers"] == 1
        api.gate("watched").set()
        await api.until_finished(execution_id)
        await stream.until(
            lambda e: e.event == "execution.succeeded" and e.data["execution_id"] == execution_id
        )
    after = live(samples((await client.get("/metrics")).text))
    assert after["reads_total"] > before["reads_total"]
    assert after["read_seconds_total"] > before["read_seconds_total"]
    assert after["writes_total"] >= before["writes_total"] + 2  # the start, then the end
    sent = sum(  # the data alone, as compact as the wire's
        len(json.dumps(e.data, separators=(",", ":"), ensure_ascii=False).encode())
        for e in stream.seen
        if e.event != "connected"  # written before the stream follows the feed
    )
    assert after["bytes_total"] - before["bytes_total"] >= sent
    assert after["cpu_seconds_total"] >= before["cpu_seconds_total"]
    assert after["subscribers"] == 0
    mine = samples((await api.http.get("/metrics")).text)  # an owner: their workspace only
    assert not live(mine)
