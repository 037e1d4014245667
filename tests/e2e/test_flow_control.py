"""Concurrency limits per key hold across worker processes, and killed workers' slots are not
leaked: their executions are claimed again once the leases expire and everything ends."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import pytest
from sqlalchemy import select

from conveyor.app import Conveyor
from conveyor.store.tables import executions
from tests.e2e.conftest import Call, Side, eventually, work
from tests.e2e.processes import LEASE, Workers
from tests.invariants import LimitSampler, check

KEY_LIMIT = 3
USERS = ["ann", "bob", "cyd"]
PER_USER = 10

FLOW = {
    "name": "per-user",
    "settings": {
        "concurrency": {"key": "user:{{ input.user }}", "key_limit": KEY_LIMIT},
        "retry": {"max_attempts": 5},
    },
    "nodes": [work("first", sleep=0.15), work("second", ["first"], sleep=0.15)],
}


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans open at one instant (an end at t closes before a start at
    t opens)."""
    points = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, step in points:
        current += step
        most = max(most, current)
    return most


def running_per_key(side: Side, ids: list[str]) -> Counter[str]:
    with side.db.read() as conn:
        keys = conn.execute(
            select(executions.c.concurrency_key).where(
                executions.c.id.in_(ids), executions.c.status == "running"
            )
        ).scalars()
        return Counter(keys)


@pytest.mark.timeout(90)
async def test_key_limit_holds_across_processes_and_killed_workers_leak_no_slot(
    app: Conveyor, side: Side, workers: Workers
) -> None:
    pair = [workers.start(concurrency=8), workers.start(concurrency=8)]
    await app.apply(FLOW)
    # Watches the running count per key from the database all along (the spans below
    # judge the same from the nodes' own calls).
    sampler = LimitSampler(side.db).__enter__()
    for worker in pair:
        await eventually(worker.connected, within=20, what=f"worker {worker.pid} connects")
    user_of: dict[str, str] = {}
    for i in range(PER_USER * len(USERS)):
        user = USERS[i % len(USERS)]
        user_of[(await app.execute("per-user", {"user": user})).execution_id] = user
    ids = list(user_of)
    pids = {w.pid for w in pair}

    def finished() -> int:
        return sum(s in ("succeeded", "failed") for s in side.statuses(ids).values())

    # Both processes run the first third side by side (the limit must hold across them).
    await eventually(
        lambda: finished() >= len(ids) // 3 and {c.pid for c in side.calls()} >= pids,
        within=30,
        what="a third finish, with both workers taking part",
    )
    # Then kill -9 every worker while some key has all its slots taken: every running
    # execution is then held by a dead process, so any slot that is not given back stays
    # taken for good. (The workers are frozen while the key is checked, so it cannot change
    # between the check and the kill.)
    for _ in range(500):
        for worker in pair:
            worker.stop()
        if KEY_LIMIT in running_per_key(side, ids).values():
            break
        for worker in pair:
            worker.cont()
        await asyncio.sleep(0.01)
    held = [e for worker in pair for e in side.held_by(worker.pid)]
    saturated = [k for k, n in running_per_key(side, ids).items() if n >= KEY_LIMIT]
    assert held and saturated, "no key reached its limit"
    killed_at = max(worker.kill() for worker in pair)

    # One new worker must get every slot back once the leases expire, and finish everything.
    workers.start(concurrency=8)
    await eventually(
        lambda: finished() == len(ids),
        within=LEASE + 15,
        what=f"every execution finishes after the kill (keys at the limit then: {saturated})",
        interval=0.05,
        diagnose=lambda: f"running per key: {running_per_key(side, ids)}\n{workers.logs()}",
    )
    sampler.stop()
    assert side.statuses() == dict.fromkeys(ids, "succeeded")  # nothing left running
    assert sampler.violations == [] and sampler.samples > 10, sampler.samples
    assert check(side.db) == []
    for execution_id in held:
        assert side.execution(execution_id)["recoveries"] >= 1

    # From the recorded calls: each execution's span, from its first call's start to its
    # last call's end (a call cut short by the kill ends at the kill).
    by_execution: dict[str, list[Call]] = defaultdict(list)
    for call in side.calls():
        by_execution[call.execution_id].append(call)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for execution_id, calls in by_execution.items():
        start = min(c.started_at for c in calls)
        end = max(c.ended_at if c.ended_at is not None else killed_at for c in calls)
        spans[user_of[execution_id]].append((start, end))
    overlaps = {user: max_overlap(s) for user, s in spans.items()}
    print(f"max overlapping executions per key: {overlaps}")
    assert max(overlaps.values()) <= KEY_LIMIT, overlaps
    # Not trivially serial: every key did reach its limit.
    assert min(overlaps.values()) == KEY_LIMIT, overlaps
