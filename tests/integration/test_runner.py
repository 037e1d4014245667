"""The runner against real databases (SQLite and PostgreSQL): parallelism, skipping, joins,
retries on an injected clock, timeouts, error strategies, side effects, cancellation, the
event log and the progress counters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from conveyor.app import Conveyor
from conveyor.engine.interfaces import Clock, SystemClock
from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext, node
from conveyor.nodes.builtin import build_registry
from conveyor.store.tables import notifications
from conveyor.worker import Worker
from tests.integration.httpserver import LocalServer
from tests.support import FakeClock

# Generous bounds that only a real sleep or a hang could cross.
QUICK = 5.0


class Delay(BaseModel):
    seconds: float = 0.2


@dataclass
class Finished:
    returned: str | None
    execution: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return str(self.execution["id"])

    @property
    def status(self) -> str:
        return str(self.execution["status"])

    def rows(self, node_id: str) -> list[dict[str, Any]]:
        return sorted(
            (s for s in self.execution["steps"] if s["node_id"] == node_id),
            key=lambda s: s["attempt"],
        )

    def step(self, node_id: str) -> dict[str, Any]:
        rows = self.rows(node_id)
        assert len(rows) >= 1, f"no step row for {node_id}"
        return rows[-1]

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["type"] == kind]


def workflow(name: str, *nodes: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {"name": name, "settings": settings, "nodes": list(nodes)}


async def start(app: Conveyor, definition: dict[str, Any], input: Any = None) -> str:
    await app.apply(definition)
    return (await app.execute(definition["name"], input or {})).execution_id


async def load(app: Conveyor, execution_id: str, returned: str | None = None) -> Finished:
    execution = await app.store.get_execution(app.workspace_id, execution_id)
    events = await app.store.events_after(execution_id)
    return Finished(returned, execution, events)


async def execute(
    app: Conveyor, definition: dict[str, Any], input: Any = None, clock: Clock | None = None
) -> Finished:
    execution_id = await start(app, definition, input)
    worker = Worker(app.store, app.registry, clock or SystemClock())
    returned = await asyncio.wait_for(worker.run_one(execution_id), timeout=30)
    return await load(app, execution_id, returned)


@pytest.fixture
async def fake_time_app(database_url: str, clock: FakeClock) -> AsyncIterator[Conveyor]:
    """Conveyor whose store and runner read the injected FakeClock."""
    app = await Conveyor.open(database_url, build_registry(allow_private_network=True), clock=clock)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
async def guarded_app(database_url: str) -> AsyncIterator[Conveyor]:
    """Conveyor whose outbound HTTP refuses private and loopback addresses."""
    app = await Conveyor.open(database_url, build_registry(allow_private_network=False))
    try:
        yield app
    finally:
        app.close()


# -- the graph -------------------------------------------------------------------------------


async def test_parallel_branches_overlap_in_time(conveyor: Conveyor) -> None:
    spans: dict[str, tuple[float, float]] = {}

    @node("test.timed_sleep", config=Delay)
    async def timed_sleep(ctx: NodeContext, config: Delay) -> dict[str, Any]:
        began = time.monotonic()
        await asyncio.sleep(config.seconds)
        spans[ctx.node_id] = (began, time.monotonic())
        return {"branch": ctx.node_id}

    conveyor.registry.register(timed_sleep)
    branches = ["crm", "billing", "support"]
    finished = await execute(
        conveyor,
        workflow(
            "overlap",
            {"id": "begin", "type": "transform", "config": {"output": 1}},
            *(
                {"id": b, "type": "test.timed_sleep", "needs": ["begin"], "config": {}}
                for b in branches
            ),
            {
                "id": "join",
                "type": "transform",
                "needs": branches,
                "config": {"output": [f"{{{{ nodes.{b}.output.branch }}}}" for b in branches]},
            },
        ),
    )
    assert finished.status == "succeeded"
    assert sorted(spans) == sorted(branches)
    latest_start = max(began for began, _ in spans.values())
    earliest_end = min(ended for _, ended in spans.values())
    assert latest_start < earliest_end, f"branches ran one after another: {spans}"
    assert finished.step("join")["output"] == branches
    assert finished.execution["result"] == {"join": branches}


async def test_a_skipped_branch_skips_everything_below_it(conveyor: Conveyor) -> None:
    finished = await execute(
        conveyor,
        workflow(
            "skips",
            {"id": "check", "type": "condition", "config": {"if": "{{ input.go }}"}},
            {"id": "yes", "type": "transform", "needs": "check.true", "config": {"output": 1}},
            {"id": "yes_child", "type": "transform", "needs": "yes", "config": {"output": 2}},
            {"id": "yes_leaf", "type": "transform", "needs": "yes_child", "config": {"output": 3}},
            {"id": "no", "type": "transform", "needs": "check.false", "config": {"output": "n"}},
            {
                "id": "after",
                "type": "transform",
                "needs": ["yes_leaf", "no"],
                "config": {"output": "{{ nodes.no.output }}"},
            },
        ),
        {"go": False},
    )
    assert finished.status == "succeeded"
    assert finished.step("check")["branch"] == "false"
    for node_id in ("yes", "yes_child", "yes_leaf"):
        [row] = finished.rows(node_id)
        assert (row["status"], row["attempt"]) == ("skipped", 0)
        assert row["started_at"] is None and row["output"] is None
    assert finished.step("no")["status"] == "succeeded"
    assert finished.step("after")["output"] == "n"
    skipped = finished.events_of("step.skipped")
    assert sorted(e["node_id"] for e in skipped) == ["yes", "yes_child", "yes_leaf"]
    assert finished.execution["steps_skipped"] == 3


async def test_a_join_runs_exactly_once(conveyor: Conveyor) -> None:
    runs: list[str] = []

    @node("test.delay", config=Delay)
    async def delay(ctx: NodeContext, config: Delay) -> float:
        await asyncio.sleep(config.seconds)
        return config.seconds

    @node("test.count_runs")
    async def count_runs(ctx: NodeContext, config: Any) -> int:
        runs.append(ctx.node_id)
        return len(runs)

    conveyor.registry.register(delay)
    conveyor.registry.register(count_runs)
    # The branches finish in three different passes of the runner.
    seconds = {"fast": 0.0, "medium": 0.05, "slow": 0.15}
    finished = await execute(
        conveyor,
        workflow(
            "join-once",
            *(
                {"id": b, "type": "test.delay", "config": {"seconds": s}}
                for b, s in seconds.items()
            ),
            {
                "id": "join",
                "type": "test.count_runs",
                "needs": list(seconds),
                "config": {
                    "total": "{{ nodes.fast.output + nodes.medium.output + nodes.slow.output }}"
                },
            },
        ),
    )
    assert finished.status == "succeeded"
    assert runs == ["join"]
    [row] = finished.rows("join")
    assert (row["status"], row["attempt"], row["output"]) == ("succeeded", 1, 1)
    assert row["input"] == {"total": pytest.approx(0.2)}
    assert row["started_at"] >= max(finished.step(b)["finished_at"] for b in seconds)
    assert [e["node_id"] for e in finished.events_of("step.started")].count("join") == 1


# -- retries, timeouts and error strategies --------------------------------------------------


async def test_retries_follow_the_backoff_schedule_on_the_injected_clock(
    fake_time_app: Conveyor, clock: FakeClock
) -> None:
    @node("test.fails_three_times")
    async def fails_three_times(ctx: NodeContext, config: Any) -> dict[str, int]:
        if ctx.attempt <= 3:
            raise NodeError(f"attempt {ctx.attempt} failed")
        return {"attempt": ctx.attempt}

    fake_time_app.registry.register(fails_three_times)
    policy = {
        "max_attempts": 4,
        "initial_interval": "1s",
        "backoff_coefficient": 2,
        "max_interval": "1m",
    }
    wall = time.monotonic()
    finished = await execute(
        fake_time_app,
        workflow("backoff", {"id": "flaky", "type": "test.fails_three_times", "retry": policy}),
        clock=clock,
    )
    wall = time.monotonic() - wall
    assert finished.status == "succeeded"
    rows = finished.rows("flaky")
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4]
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "succeeded"]
    gaps = [later["started_at"] - earlier["started_at"] for earlier, later in pairwise(rows)]
    assert gaps == [timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=4)]
    for failed in rows[:3]:
        assert failed["wait_until"] == failed["finished_at"] + (gaps[failed["attempt"] - 1])
        assert failed["error"]["message"] == f"attempt {failed['attempt']} failed"
    assert clock.sleeps == [1.0, 2.0, 4.0]
    retrying = finished.events_of("step.retrying")
    assert [e["delay_seconds"] for e in retrying] == [1.0, 2.0, 4.0]
    assert finished.step("flaky")["output"] == {"attempt": 4}
    assert finished.execution["finished_at"] - finished.execution["started_at"] == timedelta(
        seconds=7
    )
    assert wall < QUICK, "the backoff slept in real time"


async def test_a_step_timeout_fails_the_step_with_node_timeout(
    conveyor: Conveyor, http_server: LocalServer
) -> None:
    # The first http.request of a process imports httpx and builds the TLS context (seconds
    # on a loaded machine): done before, so the step's timeout bounds the request alone.
    from conveyor.nodes.outbound import make_client

    await make_client(timeout=1).aclose()
    wall = time.monotonic()
    finished = await execute(
        conveyor,
        workflow(
            "step-timeout",
            {
                "id": "slow_call",
                "type": "http.request",
                "timeout": "1s",
                "retry": {"max_attempts": 1},
                "config": {
                    "url": f"{http_server.base_url}/slow",
                    "query": {"seconds": 30},
                    "timeout": "60s",
                },
            },
            {"id": "after", "type": "transform", "needs": "slow_call", "config": {"output": 1}},
        ),
    )
    wall = time.monotonic() - wall
    assert finished.status == "failed"
    [row] = finished.rows("slow_call")
    assert row["status"] == "failed"
    assert row["error"]["type"] == "NodeTimeout"
    assert row["error"]["message"] == "step timed out after 1s"
    assert timedelta(seconds=1) <= row["finished_at"] - row["started_at"] < timedelta(seconds=QUICK)
    assert finished.execution["error"]["node_id"] == "slow_call"
    assert finished.execution["error"]["type"] == "NodeTimeout"
    assert finished.rows("after") == []
    assert [r.query for r in http_server.requests_to("/slow")] == [{"seconds": "30"}]
    assert wall < QUICK


async def test_on_error_continue_records_the_error_as_the_output(conveyor: Conveyor) -> None:
    finished = await execute(
        conveyor,
        workflow(
            "continue",
            {
                "id": "enrich",
                "type": "fail",
                "on_error": "continue",
                "config": {"message": "enrichment service said no"},
            },
            {
                "id": "use_error",
                "type": "transform",
                "needs": "enrich",
                "config": {
                    "output": {
                        "failed_with": "{{ nodes.enrich.output.error.type }}",
                        "because": "{{ nodes.enrich.output.error.message }}",
                    }
                },
            },
        ),
    )
    assert finished.status == "succeeded"
    assert finished.execution["error"] is None
    [row] = finished.rows("enrich")
    error = {
        "type": "NodeError",
        "message": "enrichment service said no",
        "non_retryable": True,
        "step_index": 1,
    }
    assert row["status"] == "failed"
    assert row["continued"] is True
    assert row["error"] == error
    assert row["output"] == {"error": error}
    expected = {"failed_with": "NodeError", "because": "enrichment service said no"}
    assert finished.step("use_error")["output"] == expected
    assert finished.execution["result"] == {"use_error": expected}
    assert finished.events_of("step.failed") == [
        {"node_id": "enrich", "attempt": 1, "error": error, "continued": True}
    ]


async def test_on_error_stop_fails_the_execution_naming_the_node(conveyor: Conveyor) -> None:
    finished = await execute(
        conveyor,
        workflow(
            "stop",
            {"id": "charge", "type": "fail", "config": {"message": "card declined"}},
            {"id": "receipt", "type": "transform", "needs": "charge", "config": {"output": 1}},
            on_error="stop",
        ),
    )
    assert finished.status == "failed"
    assert finished.returned == "failed"
    expected = {
        "node_id": "charge",
        "type": "NodeError",
        "message": "card declined",
        "non_retryable": True,  # a fail node's failure is deliberate: not retried
        "step_index": 1,
    }
    assert finished.execution["error"] == expected
    assert finished.execution["result"] is None
    [row] = finished.rows("charge")
    assert (row["status"], row["continued"], row["output"]) == ("failed", False, None)
    assert finished.rows("receipt") == []
    assert finished.events[-1]["type"] == "execution.failed"
    assert finished.events[-1]["data"]["error"] == expected


# -- side effects ----------------------------------------------------------------------------


async def test_a_notify_node_writes_a_notification_row(conveyor: Conveyor) -> None:
    finished = await execute(
        conveyor,
        workflow(
            "notify",
            {
                "id": "tell",
                "type": "notify",
                "config": {
                    "channel": "ops",
                    "title": "Deploy {{ input.version }} done",
                    "message": "by {{ input.who }}",
                    "data": {"version": "{{ input.version }}"},
                },
            },
        ),
        {"version": "1.4.2", "who": "grace"},
    )
    assert finished.status == "succeeded"
    with conveyor.store.db.read() as conn:
        rows = [dict(r) for r in conn.execute(select(notifications)).mappings()]
    [row] = rows
    assert row["workspace_id"] == conveyor.workspace_id
    assert (row["execution_id"], row["node_id"]) == (finished.id, "tell")
    assert (row["channel"], row["title"], row["message"]) == (
        "ops",
        "Deploy 1.4.2 done",
        "by grace",
    )
    assert row["data"] == {"version": "1.4.2"}
    assert finished.step("tell")["output"] == {"notification_id": row["id"], "channel": "ops"}


async def test_http_request_sends_the_same_idempotency_key_on_every_attempt(
    fake_time_app: Conveyor, clock: FakeClock, http_server: LocalServer
) -> None:
    finished = await execute(
        fake_time_app,
        workflow(
            "idempotent",
            {
                "id": "charge",
                "type": "http.request",
                "config": {
                    "method": "POST",
                    "url": f"{http_server.base_url}/flaky",
                    "query": {"fail": 2},
                    "json": {"amount": 42},
                },
                "retry": {"max_attempts": 3, "initial_interval": "1s"},
            },
        ),
        clock=clock,
    )
    assert finished.status == "succeeded"
    requests = http_server.requests_to("/flaky")
    key = f"{finished.id}:charge"
    assert [r.idempotency_key for r in requests] == [key, key, key]
    assert [r.body for r in requests] == [b'{"amount":42}'] * 3
    rows = finished.rows("charge")
    assert [r["status"] for r in rows] == ["failed", "failed", "succeeded"]
    assert [r["error"]["details"]["status"] for r in rows[:2]] == [503, 503]
    assert rows[-1]["output"]["body"] == {"ok": True, "calls": 3, "query": {"fail": "2"}}
    assert clock.sleeps == [1.0, 2.0]
    assert finished.execution["usage_api_calls"] == 3


async def test_http_request_to_loopback_is_refused_without_retrying(
    guarded_app: Conveyor, http_server: LocalServer
) -> None:
    finished = await execute(
        guarded_app,
        workflow(
            "guarded",
            {
                "id": "internal",
                "type": "http.request",
                "config": {"url": f"{http_server.base_url}/echo"},
                "retry": {"max_attempts": 5, "initial_interval": "10ms"},
            },
        ),
    )
    assert finished.status == "failed"
    [row] = finished.rows("internal")
    assert row["status"] == "failed"
    assert row["error"]["type"] == "BlockedAddress"
    assert row["error"]["non_retryable"] is True
    assert "loopback" in row["error"]["message"]
    assert row["wait_until"] is None
    assert finished.execution["error"]["node_id"] == "internal"
    assert finished.events_of("step.retrying") == []
    assert http_server.requests == []


# -- cancellation and the execution timeout --------------------------------------------------


async def test_cancelling_the_worker_task_cancels_the_execution_and_the_node(
    conveyor: Conveyor,
) -> None:
    entered = asyncio.Event()
    saw: list[str] = []

    @node("test.block")
    async def block(ctx: NodeContext, config: Any) -> None:
        entered.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            saw.append(f"{ctx.node_id} cancelled")
            raise

    conveyor.registry.register(block)
    execution_id = await start(
        conveyor,
        workflow(
            "cancel",
            {"id": "before", "type": "transform", "config": {"output": "done"}},
            {"id": "blocked", "type": "test.block", "needs": "before"},
            {"id": "after", "type": "transform", "needs": "blocked", "config": {"output": 1}},
        ),
    )
    worker = Worker(conveyor.store, conveyor.registry, SystemClock())
    task = asyncio.create_task(worker.run_one(execution_id))
    await asyncio.wait_for(entered.wait(), timeout=QUICK)
    running = await load(conveyor, execution_id)
    assert running.status == "running"
    assert running.step("blocked")["status"] == "running"
    assert running.execution["steps_running"] == 1

    task.cancel()
    wall = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=QUICK)
    assert time.monotonic() - wall < QUICK

    finished = await load(conveyor, execution_id)
    assert saw == ["blocked cancelled"]
    assert finished.status == "cancelled"
    assert finished.execution["error"] == {"type": "cancelled", "message": "cancelled"}
    assert finished.execution["finished_at"] is not None
    assert finished.execution["lease_owner"] is None
    blocked = finished.step("blocked")
    assert blocked["status"] == "cancelled"
    assert blocked["error"]["type"] == "Cancelled"
    assert finished.step("before")["status"] == "succeeded"
    assert finished.rows("after") == []
    assert finished.execution["steps_running"] == 0
    assert [e["node_id"] for e in finished.events_of("step.cancelled")] == ["blocked"]
    assert finished.events[-1]["type"] == "execution.cancelled"


async def test_execution_timeout_on_the_injected_clock(
    fake_time_app: Conveyor, clock: FakeClock
) -> None:
    wall = time.monotonic()
    finished = await execute(
        fake_time_app,
        workflow(
            "deadline",
            {"id": "hold", "type": "wait", "config": {"duration": "1h"}},
            {"id": "after", "type": "transform", "needs": "hold", "config": {"output": 1}},
            execution_timeout="10s",
        ),
        clock=clock,
    )
    assert finished.status == "timed_out"
    assert finished.returned == "timed_out"
    assert finished.execution["error"] == {"type": "timed_out", "message": "execution timed out"}
    assert finished.execution["deadline_at"] == finished.execution["started_at"] + timedelta(
        seconds=10
    )
    assert finished.execution["finished_at"] == finished.execution["deadline_at"]
    assert clock.sleeps == [10.0]
    [hold] = finished.rows("hold")
    assert hold["status"] == "cancelled"
    assert hold["error"] == {"type": "Cancelled", "message": "execution timed out"}
    assert finished.rows("after") == []
    assert finished.events[-1]["type"] == "execution.timed_out"
    assert {"type": "step.cancelled", "node_id": "hold"} in [
        {"type": e["type"], "node_id": e["data"].get("node_id")} for e in finished.events
    ]
    assert time.monotonic() - wall < QUICK


async def test_http_request_keeps_the_urls_query_and_adds_query(
    fake_time_app: Conveyor, clock: FakeClock, http_server: LocalServer
) -> None:
    finished = await execute(
        fake_time_app,
        workflow(
            "query",
            {
                "id": "get",
                "type": "http.request",
                "config": {
                    "url": f"{http_server.base_url}/echo?a=1&b=2",
                    "query": {"b": 3, "c": 4},
                },
            },
        ),
        clock=clock,
    )
    assert finished.status == "succeeded"
    [request] = http_server.requests_to("/echo")
    assert request.query == {"a": "1", "b": "3", "c": "4"}


async def test_execution_timeout_cancels_the_step_in_flight(conveyor: Conveyor) -> None:
    saw: list[str] = []

    @node("test.hang")
    async def hang(ctx: NodeContext, config: Any) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            saw.append(ctx.node_id)
            raise

    conveyor.registry.register(hang)
    wall = time.monotonic()
    finished = await execute(
        conveyor,
        workflow(
            "deadline-in-flight",
            {"id": "stuck", "type": "test.hang"},
            execution_timeout="300ms",
        ),
    )
    wall = time.monotonic() - wall
    assert finished.status == "timed_out"
    assert saw == ["stuck"]
    [row] = finished.rows("stuck")
    assert row["status"] == "cancelled"
    assert row["error"] == {"type": "Cancelled", "message": "execution timed out"}
    assert finished.execution["steps_running"] == 0
    assert timedelta(milliseconds=300) <= (
        finished.execution["finished_at"] - finished.execution["started_at"]
    )
    assert wall < QUICK


# -- the event log and the progress counters -------------------------------------------------


def _busy_workflow(name: str) -> dict[str, Any]:
    """Parallel branches, a retried node, a continued failure and a skipped branch."""
    return workflow(
        name,
        {"id": "begin", "type": "transform", "config": {"output": "{{ input.n }}"}},
        {"id": "flaky", "type": "test.fails_once", "needs": "begin",
         "retry": {"max_attempts": 2, "initial_interval": "10ms"}},
        {"id": "broken", "type": "fail", "needs": "begin", "on_error": "continue"},
        {"id": "gate", "type": "condition", "needs": "begin", "config": {"if": False}},
        {"id": "never", "type": "transform", "needs": "gate.true", "config": {"output": 0}},
        {"id": "never_child", "type": "transform", "needs": "never", "config": {"output": 0}},
        {"id": "pause", "type": "wait", "needs": "gate.false", "config": {"duration": "20ms"}},
        {"id": "held", "type": "test.held", "needs": ["flaky", "broken", "pause"]},
        {"id": "end", "type": "transform", "needs": ["held", "never_child"],
         "config": {"output": "{{ nodes.begin.output }}"}},
    )  # fmt: skip


def _register_busy_nodes(app: Conveyor, release: asyncio.Event, held: asyncio.Event) -> None:
    @node("test.fails_once")
    async def fails_once(ctx: NodeContext, config: Any) -> int:
        if ctx.attempt == 1:
            raise NodeError("first attempt fails")
        return ctx.attempt

    @node("test.held")
    async def wait_for_release(ctx: NodeContext, config: Any) -> str:
        held.set()
        await release.wait()
        return "released"

    app.registry.register(fails_once)
    app.registry.register(wait_for_release)


async def test_events_are_numbered_one_to_n_without_gaps_per_execution(
    conveyor: Conveyor,
) -> None:
    release, held = asyncio.Event(), asyncio.Event()
    release.set()
    _register_busy_nodes(conveyor, release, held)
    definition = _busy_workflow("events")
    ids = [await start(conveyor, definition, {"n": n}) for n in range(3)]
    worker = Worker(conveyor.store, conveyor.registry, SystemClock())
    returned = await asyncio.wait_for(asyncio.gather(*(worker.run_one(i) for i in ids)), timeout=30)
    assert returned == ["succeeded"] * 3
    event_ids: set[int] = set()
    total = 0
    for execution_id in ids:
        finished = await load(conveyor, execution_id)
        seqs = [e["seq"] for e in finished.events]
        assert seqs == list(range(1, len(seqs) + 1))
        assert finished.execution["event_seq"] == len(seqs)
        assert {e["execution_id"] for e in finished.events} == {execution_id}
        types = [e["type"] for e in finished.events]
        assert types[:2] == ["execution.queued", "execution.started"]
        assert types[-1] == "execution.succeeded"
        assert types.count("step.started") == len(
            [s for s in finished.execution["steps"] if s["status"] != "skipped"]
        )
        assert types.count("step.retrying") == 1
        assert types.count("step.waiting") == 1
        assert types.count("step.skipped") == 2
        event_ids |= {e["id"] for e in finished.events}
        total += len(finished.events)
    assert len(event_ids) == total


def _counted(steps: list[dict[str, Any]]) -> dict[str, int]:
    """What the counters should say, from the step rows: the latest attempt of each node."""
    latest: dict[str, dict[str, Any]] = {}
    for row in sorted(steps, key=lambda s: s["attempt"]):
        latest[row["node_id"]] = row
    statuses = [r["status"] for r in latest.values()]
    return {
        "steps_succeeded": statuses.count("succeeded"),
        "steps_failed": statuses.count("failed"),
        "steps_skipped": statuses.count("skipped"),
        "steps_running": statuses.count("running"),
    }


async def test_progress_counters_match_the_step_rows(conveyor: Conveyor) -> None:
    release, held = asyncio.Event(), asyncio.Event()
    _register_busy_nodes(conveyor, release, held)
    definition = _busy_workflow("progress")
    execution_id = await start(conveyor, definition, {"n": 7})
    worker = Worker(conveyor.store, conveyor.registry, SystemClock())
    task = asyncio.create_task(worker.run_one(execution_id))
    try:
        await asyncio.wait_for(held.wait(), timeout=QUICK)
        midway = await load(conveyor, execution_id)
        counters = {k: midway.execution[k] for k in _counted(midway.execution["steps"])}
        assert counters == _counted(midway.execution["steps"])
        assert counters == {
            "steps_succeeded": 4,
            "steps_failed": 1,
            "steps_skipped": 2,
            "steps_running": 1,
        }
    finally:
        release.set()
        returned = await asyncio.wait_for(task, timeout=30)
    assert returned == "succeeded"
    finished = await load(conveyor, execution_id)
    steps = finished.execution["steps"]
    expected = _counted(steps)
    assert {k: finished.execution[k] for k in expected} == expected
    assert expected == {
        "steps_succeeded": 6,
        "steps_failed": 1,
        "steps_skipped": 2,
        "steps_running": 0,
    }
    assert finished.execution["steps_total"] == len(definition["nodes"]) == 9
    assert len(finished.rows("flaky")) == 2
    assert finished.step("end")["output"] == 7


# -- the default retry policy -------------------------------------------------------------------


async def test_without_a_policy_a_failing_step_is_tried_three_times_with_backoff(
    fake_time_app: Conveyor, clock: FakeClock
) -> None:
    attempts: list[int] = []

    @node("test.always_down")
    async def always_down(ctx: NodeContext, config: Any) -> None:
        attempts.append(ctx.attempt)
        raise NodeError("service unavailable")

    @node("test.charge", repeatable=False)
    async def charge(ctx: NodeContext, config: Any) -> None:
        attempts.append(100 + ctx.attempt)
        raise NodeError("card network down")

    fake_time_app.registry.register(always_down)
    fake_time_app.registry.register(charge)
    finished = await execute(
        fake_time_app,
        workflow("defaults", {"id": "down", "type": "test.always_down"}),
        clock=clock,
    )
    assert finished.status == "failed"
    assert [r["attempt"] for r in finished.rows("down")] == [1, 2, 3]
    assert [e["delay_seconds"] for e in finished.events_of("step.retrying")] == [1.0, 2.0]

    # A type that says it is unsafe to repeat gets one attempt, unless a policy is explicit.
    unsafe = await execute(
        fake_time_app, workflow("unsafe", {"id": "pay", "type": "test.charge"}), clock=clock
    )
    assert [r["attempt"] for r in unsafe.rows("pay")] == [1]
    explicit = await execute(
        fake_time_app,
        workflow(
            "unsafe-explicit", {"id": "pay", "type": "test.charge"}, retry={"max_attempts": 2}
        ),
        clock=clock,
    )
    assert [r["attempt"] for r in explicit.rows("pay")] == [1, 2]
    # max_attempts: 1 is the at-most-once opt-out for any type.
    once = await execute(
        fake_time_app,
        workflow("once", {"id": "down", "type": "test.always_down", "retry": {"max_attempts": 1}}),
        clock=clock,
    )
    assert [r["attempt"] for r in once.rows("down")] == [1]
    assert attempts == [1, 2, 3, 101, 101, 102, 1]
