"""Run controls against real worker processes: cancel (G9), retry from a failure and replay
from a node (G2), long waits that hold no slot, graceful shutdown, and dead-lettering of
crash loops (G6). Plus the in-process check that a 1 h wait resumes when an injected clock
says it is due."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.worker import Worker
from tests.e2e.conftest import Side, check_event_sequences, eventually, work
from tests.e2e.processes import LEASE, POLL, PROFILE, Workers
from tests.support import FakeClock


def status_of(side: Side, execution_id: str) -> str:
    return side.statuses([execution_id])[execution_id]


def calls_per_node(side: Side, execution_id: str) -> Counter[str]:
    return Counter(c.node_id for c in side.calls(execution_id))


async def finish(side: Side, workers: Workers, execution_id: str, within: float = 20) -> str:
    """Wait for a terminal status and return it."""
    return await eventually(
        lambda: (s := status_of(side, execution_id)) in ("succeeded", "failed", "cancelled") and s,
        within=within,
        what=f"execution {execution_id} finishes",
        diagnose=workers.logs,
    )


# -- cancel ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_cancelling_a_running_execution_is_prompt_and_aborts_the_call(
    backend: str, app: Conveyor, side: Side, workers: Workers
) -> None:
    workers.start(concurrency=2)
    await app.apply(
        {
            "name": "cancellable",
            "nodes": [work("long", sleep=60), work("never", ["long"])],
        }
    )
    execution_id = (await app.execute("cancellable", {})).execution_id
    await eventually(lambda: side.calls(execution_id), within=20, what="the long step starts")

    began = time.monotonic()
    assert await app.cancel(execution_id) == "running"
    await eventually(
        lambda: status_of(side, execution_id) == "cancelled",
        within=5,
        what="the execution is cancelled",
        interval=0.01,
        diagnose=workers.logs,
    )
    took = time.monotonic() - began
    print(f"cancel took {took:.3f}s on {backend}")
    # PostgreSQL wakes the worker with NOTIFY; SQLite workers notice at their next poll.
    bound = 1.0 if backend == "postgres" else POLL + 1.0
    assert took <= bound, f"cancel took {took:.2f}s (bound {bound}s)"

    # The node's code saw CancelledError, and nothing after it started.
    [call] = side.calls(execution_id)
    assert (call.node_id, call.outcome) == ("long", "cancelled")
    assert [(s["node_id"], s["status"]) for s in side.steps(execution_id)] == [
        ("long", "cancelled")
    ]
    events = side.events(execution_id)
    assert events[-1]["type"] == "execution.cancelled"

    # Cancelling twice is harmless: same answer, nothing written.
    assert await app.cancel(execution_id) == "cancelled"
    assert side.events(execution_id) == events
    assert status_of(side, execution_id) == "cancelled"
    check_event_sequences(side, [execution_id])


# -- retry and replay --------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_retry_reruns_only_the_failed_node_and_what_follows(
    app: Conveyor, side: Side, workers: Workers
) -> None:
    workers.start(concurrency=2)
    flag = f"fixed-{uuid.uuid4().hex[:8]}"
    await app.apply(
        {
            "name": "flaky",
            "nodes": [
                work("a"),
                work("d", ["a"]),
                work("b", ["a", "d"], fail_unless_flag=flag),
                work("c", ["b"]),
            ],
        }
    )
    first = (await app.execute("flaky", {})).execution_id
    assert await finish(side, workers, first) == "failed"
    assert calls_per_node(side, first) == {"a": 1, "d": 1, "b": 1}

    side.set_flag(flag)  # the cause is fixed
    second = (await app.retry(first)).execution_id
    assert await finish(side, workers, second) == "succeeded"
    assert calls_per_node(side, second) == {"b": 1, "c": 1}
    assert calls_per_node(side, first) == {"a": 1, "d": 1, "b": 1}
    assert status_of(side, first) == "failed"
    _assert_reused(side, first, second, ["a", "d"])


@pytest.mark.timeout(60)
async def test_replay_reruns_only_the_node_and_its_descendants(
    app: Conveyor, side: Side, workers: Workers
) -> None:
    workers.start(concurrency=2)
    await app.apply(
        {
            "name": "replayable",
            "nodes": [
                work("a"),
                work("b", ["a"]),
                work("c", ["b"]),
                work("d", ["a"]),  # a sibling of b: not downstream of it
            ],
        }
    )
    first = (await app.execute("replayable", {})).execution_id
    assert await finish(side, workers, first) == "succeeded"
    assert calls_per_node(side, first) == {"a": 1, "b": 1, "c": 1, "d": 1}

    second = (await app.replay(first, "b")).execution_id
    assert await finish(side, workers, second) == "succeeded"
    assert calls_per_node(side, second) == {"b": 1, "c": 1}
    _assert_reused(side, first, second, ["a", "d"])


def _assert_reused(side: Side, old: str, new: str, nodes: list[str]) -> None:
    """The new execution's steps for ``nodes`` are the old outputs, not new runs."""
    old_steps = {s["node_id"]: s for s in side.steps(old) if s["status"] == "succeeded"}
    new_steps = {s["node_id"]: s for s in side.steps(new)}
    for node_id in nodes:
        assert new_steps[node_id]["status"] == "succeeded"
        assert new_steps[node_id]["output"] == old_steps[node_id]["output"]
        assert new_steps[node_id]["output"]["key"] == f"{old}:{node_id}"


# -- waits ---------------------------------------------------------------------------------


WAITER: dict[str, Any] = {
    "name": "waiter",
    "nodes": [
        work("before"),
        {"id": "nap", "type": "wait", "needs": ["before"], "config": {"duration": "1h"}},
        work("after", ["nap"]),
    ],
}


@pytest.mark.timeout(60)
async def test_a_long_wait_holds_no_worker_slot(
    app: Conveyor, side: Side, workers: Workers
) -> None:
    worker = workers.start(concurrency=1)
    await app.apply(WAITER)
    await app.apply({"name": "quick", "nodes": [work("only")]})
    waiting = (await app.execute("waiter", {})).execution_id
    await eventually(
        lambda: status_of(side, waiting) == "waiting",
        within=20,
        what="the execution waits",
        diagnose=workers.logs,
    )
    # The single slot is free: another execution runs and finishes meanwhile.
    quick = (await app.execute("quick", {})).execution_id
    assert await finish(side, workers, quick) == "succeeded"

    row = side.execution(waiting)
    assert row["status"] == "waiting"
    assert row["lease_owner"] is None
    assert row["wait_reason"].startswith("waiting until")
    assert side.held_by(worker.pid) == []
    assert calls_per_node(side, waiting) == {"before": 1}


@pytest.mark.timeout(30)
async def test_with_an_injected_clock_a_one_hour_wait_resumes_when_due(
    database_url: str,
) -> None:
    clock = FakeClock()
    app = await Conveyor.open(database_url, build_registry(), clock=clock)
    worker = Worker(
        app.store,
        app.registry,
        clock,
        lease=timedelta(seconds=LEASE),
        heartbeat=timedelta(seconds=0.5),
        poll=timedelta(seconds=0.05),
        hold_timers_up_to=timedelta(seconds=5),
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        await app.apply(
            {
                "name": "sleeper",
                "nodes": [
                    {"id": "nap", "type": "wait", "config": {"duration": "1h"}},
                    {"id": "after", "type": "transform", "needs": ["nap"], "config": {"output": 1}},
                ],
            }
        )
        started = clock.now()
        execution_id = (await app.execute("sleeper", {})).execution_id

        async def status() -> str:
            return str((await app.store.get_execution(app.workspace_id, execution_id))["status"])

        await eventually(lambda: _is(status(), "waiting"), within=10, what="the execution waits")
        # One minute early, nobody can claim it.
        clock.current = started + timedelta(minutes=59)
        assert await app.store.claim("probe", lease_seconds=LEASE) == []
        assert await status() == "waiting"

        clock.current = started + timedelta(hours=1, seconds=1)
        await eventually(
            lambda: _is(status(), "succeeded"), within=10, what="the wait resumes when due"
        )
        detail = await app.store.get_execution(app.workspace_id, execution_id)
        steps = {s["node_id"]: s for s in detail["steps"]}
        assert steps["nap"]["status"] == steps["after"]["status"] == "succeeded"
        assert steps["after"]["started_at"] >= started + timedelta(hours=1)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)
        app.close()


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


# -- graceful shutdown ------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_sigterm_finishes_the_running_step_and_hands_the_rest_over(
    app: Conveyor, side: Side, workers: Workers
) -> None:
    grace = float(PROFILE["CONVEYOR_SHUTDOWN_GRACE_SECONDS"])
    first = workers.start(concurrency=2)
    await app.apply(
        {
            "name": "handover",
            "settings": {"retry": {"max_attempts": 3}},
            "nodes": [work("step1", sleep=1.5), work("step2", ["step1"], sleep=0.01)],
        }
    )
    execution_id = (await app.execute("handover", {})).execution_id
    [call] = await eventually(
        lambda: side.calls(execution_id), within=20, what="step1 starts", diagnose=workers.logs
    )
    assert call.pid == first.pid

    began = time.monotonic()
    first.send(signal.SIGTERM)
    assert first.wait(timeout=grace + 5) == 0
    assert time.monotonic() - began <= grace + 1

    # The step finished and was committed; the execution went back to the queue.
    [call] = side.calls(execution_id)
    assert call.outcome == "ok"
    row = side.execution(execution_id)
    assert (row["status"], row["lease_owner"]) == ("queued", None)
    assert [(s["node_id"], s["attempt"], s["status"]) for s in side.steps(execution_id)] == [
        ("step1", 1, "succeeded")
    ]

    second = workers.start(concurrency=2)
    assert await finish(side, workers, execution_id) == "succeeded"
    assert calls_per_node(side, execution_id) == {"step1": 1, "step2": 1}
    assert [c.pid for c in side.calls(execution_id)] == [first.pid, second.pid]
    assert side.execution(execution_id)["recoveries"] == 0
    check_event_sequences(side, [execution_id])


@pytest.mark.timeout(90)
async def test_an_execution_drained_by_sigterm_keeps_its_place_in_line(
    app: Conveyor, side: Side, workers: Workers
) -> None:
    """A graceful shutdown gives the execution back without sending it behind the backlog
    that queued after it: with one slot per key, it runs again before any younger one."""
    await app.apply(
        {
            "name": "lined",
            "settings": {
                "concurrency": {"key": "all", "key_limit": 1},
                "retry": {"max_attempts": 3, "initial_interval": "100ms"},
            },
            # The oldest one's attempt 1 outlives the shutdown grace: the drain cuts it short.
            "nodes": [
                work(
                    "step",
                    sleep=0.05,
                    first_attempt_sleep="{{ 30 if input.n == 0 else none }}",
                )
            ],
        }
    )
    oldest = (await app.execute("lined", {"n": 0})).execution_id
    first = workers.start(concurrency=1, CONVEYOR_SHUTDOWN_GRACE_SECONDS="0.5")
    await eventually(
        lambda: side.calls(oldest), within=20, what="the oldest starts", diagnose=workers.logs
    )
    younger = [(await app.execute("lined", {"n": i})).execution_id for i in range(1, 9)]
    first.send(signal.SIGTERM)
    assert first.wait(timeout=20) == 0
    assert status_of(side, oldest) == "queued"

    workers.start(concurrency=4)
    await eventually(
        lambda: set(side.statuses([oldest, *younger]).values()) == {"succeeded"},
        within=30,
        what="every execution succeeds",
        diagnose=lambda: (
            f"{side.statuses([oldest, *younger])} {side.steps(oldest)}{workers.logs()}"
        ),
    )
    order = [
        c.execution_id
        for c in sorted(side.calls(), key=lambda c: c.started_at)
        if c.pid != first.pid
    ]
    assert order[0] == oldest, f"the drained execution ran after {order.index(oldest)} younger"
    check_event_sequences(side, [oldest, *younger])


# -- dead-lettering ----------------------------------------------------------------------------

MAX_RECOVERIES = 2


@pytest.mark.timeout(90)
async def test_an_execution_whose_worker_keeps_dying_is_dead_lettered(
    app: Conveyor, side: Side, workers: Workers
) -> None:
    env = {"CONVEYOR_MAX_RECOVERIES": str(MAX_RECOVERIES)}
    await app.apply(
        {
            "name": "crashy",
            "settings": {"retry": {"max_attempts": 10}},
            "nodes": [work("boom", sleep=60)],
        }
    )
    await app.apply({"name": "bystander", "nodes": [work("fine")]})
    execution_id = (await app.execute("crashy", {})).execution_id

    # The first run and MAX_RECOVERIES recoveries each die in the middle of the step. (Each
    # next worker boots while the dead one's lease runs out.)
    for attempt in range(1, MAX_RECOVERIES + 2):
        worker = workers.start(concurrency=1, **env)
        await eventually(
            lambda a=attempt, w=worker: [  # type: ignore[misc]
                c for c in side.calls(execution_id) if c.attempt == a and c.pid == w.pid
            ],
            within=LEASE + 20,
            what=f"attempt {attempt} of the step starts",
            diagnose=workers.logs,
        )
        worker.kill()

    bystander = (await app.execute("bystander", {})).execution_id
    workers.start(concurrency=2, **env)
    assert await finish(side, workers, execution_id, within=LEASE + 20) == "failed"
    assert await finish(side, workers, bystander) == "succeeded"

    row = side.execution(execution_id)
    assert row["error"]["type"] == "DeadLettered"
    assert "dead-lettered" in row["error"]["message"]
    assert row["recoveries"] == MAX_RECOVERIES + 1
    # The dead-lettering worker ran nothing: only the runs that died are on record.
    assert len(side.calls(execution_id)) == MAX_RECOVERIES + 1
    steps = side.steps(execution_id)
    assert {s["status"] for s in steps} == {"interrupted"}
    check_event_sequences(side, [execution_id, bystander])
