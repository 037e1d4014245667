"""The execution queue on real databases: claims, leases, fencing, idempotency, priority."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from conveyor.app import Conveyor
from conveyor.engine.interfaces import Changes
from conveyor.engine.state import ExecutionStatus
from conveyor.errors import LeaseLost
from conveyor.store.tables import events, executions

LINEAR = {
    "name": "linear",
    "nodes": [
        {"id": "a", "type": "transform", "config": {"output": 1}},
        {"id": "b", "type": "transform", "needs": ["a"], "config": {"output": 2}},
    ],
}


async def test_idempotency_key_returns_the_first_execution(conveyor: Conveyor) -> None:
    await conveyor.apply(LINEAR)
    first = await conveyor.execute("linear", {"n": 1}, idempotency_key="order-7")
    second = await conveyor.execute("linear", {"n": 2}, idempotency_key="order-7")
    third = await conveyor.execute("linear", {"n": 3}, idempotency_key="order-8")
    assert first.created and not second.created and third.created
    assert second.execution_id == first.execution_id != third.execution_id


async def test_claim_takes_priority_first_then_age(conveyor: Conveyor) -> None:
    await conveyor.apply(LINEAR)
    low = await conveyor.execute("linear", priority=0)
    high = await conveyor.execute("linear", priority=5)
    claimed = await conveyor.store.claim("w1", lease_seconds=30, limit=1)
    assert [c.id for c in claimed] == [high.execution_id]
    claimed = await conveyor.store.claim("w1", lease_seconds=30, limit=5)
    assert [c.id for c in claimed] == [low.execution_id]
    assert await conveyor.store.claim("w2", lease_seconds=30, limit=5) == []


async def test_a_stale_lease_writes_nothing(conveyor: Conveyor) -> None:
    await conveyor.apply(LINEAR)
    enqueued = await conveyor.execute("linear")
    [first] = await conveyor.store.claim("w1", lease_seconds=30)
    # The lease expires (by the database clock) and another worker takes the execution.
    with conveyor.store.db.write() as conn:
        conn.execute(update(executions).values(lease_expires_at=first.created_at))
    [second] = await conveyor.store.claim("w2", lease_seconds=30)
    assert second.id == first.id and second.lease.number == first.lease.number + 1
    assert second.recoveries == 1
    stale = Changes(events=[("step.started", {"node_id": "a"})])
    with pytest.raises(LeaseLost):
        await conveyor.store.apply(first, stale)
    await conveyor.store.apply(second, Changes(events=[("execution.resumed", {})]))
    with conveyor.store.db.read() as conn:
        kinds = conn.execute(
            select(events.c.seq, events.c.type)
            .where(events.c.execution_id == enqueued.execution_id)
            .order_by(events.c.seq)
        ).all()
    assert [tuple(k) for k in kinds] == [(1, "execution.queued"), (2, "execution.resumed")]


async def test_a_finished_execution_is_never_claimed_or_changed(conveyor: Conveyor) -> None:
    await conveyor.apply(LINEAR)
    await conveyor.execute("linear")
    [claimed] = await conveyor.store.claim("w1", lease_seconds=30)
    done = Changes(
        status=ExecutionStatus.SUCCEEDED,
        finished_at=claimed.created_at,
        release=True,
        events=[("execution.succeeded", {})],
    )
    await conveyor.store.apply(claimed, done)
    assert await conveyor.store.claim("w1", lease_seconds=30) == []
    with pytest.raises(LeaseLost):
        await conveyor.store.apply(claimed, Changes(status=ExecutionStatus.FAILED))


async def test_cancel_of_a_queued_execution_is_immediate_and_idempotent(
    conveyor: Conveyor,
) -> None:
    await conveyor.apply(LINEAR)
    enqueued = await conveyor.execute("linear")
    assert await conveyor.cancel(enqueued.execution_id) == "cancelled"
    assert await conveyor.cancel(enqueued.execution_id) == "cancelled"
    detail = await conveyor.store.get_execution(conveyor.workspace_id, enqueued.execution_id)
    assert detail["status"] == "cancelled"
    assert await conveyor.store.claim("w1", lease_seconds=30) == []
    with conveyor.store.db.read() as conn:
        kinds = (
            conn.execute(
                select(events.c.type).where(events.c.execution_id == enqueued.execution_id)
            )
            .scalars()
            .all()
        )
    assert kinds.count("execution.cancelled") == 1


async def test_a_cancel_that_lands_before_the_final_write_wins(conveyor: Conveyor) -> None:
    await conveyor.apply(LINEAR)
    enqueued = await conveyor.execute("linear")
    [claimed] = await conveyor.store.claim("w1", lease_seconds=30)
    assert await conveyor.cancel(enqueued.execution_id) == "running"
    done = Changes(
        status=ExecutionStatus.SUCCEEDED,
        finished_at=claimed.created_at,
        release=True,
        result={"b": 2},
        events=[("execution.succeeded", {})],
    )
    await conveyor.store.apply(claimed, done)
    detail = await conveyor.store.get_execution(conveyor.workspace_id, enqueued.execution_id)
    assert detail["status"] == "cancelled"
    assert detail["result"] is None


async def test_parking_after_a_signal_already_landed_makes_it_due_at_once(
    conveyor: Conveyor,
) -> None:
    await conveyor.apply(LINEAR)
    enqueued = await conveyor.execute("linear")
    [claimed] = await conveyor.store.claim("w1", lease_seconds=30)
    # The signal lands while the runner still holds the execution (nothing to wake yet)...
    await conveyor.signal(enqueued.execution_id, "approved", {"ok": True})
    # ...and the runner, which looked before it landed, parks the execution for the signal.
    never = claimed.created_at.replace(year=9999)
    park = Changes(
        status=ExecutionStatus.WAITING,
        available_at=never,
        release=True,
        wake_signals=["approved"],
        events=[("execution.waiting", {})],
    )
    await conveyor.store.apply(claimed, park)
    [again] = await conveyor.store.claim("w2", lease_seconds=30)
    assert again.id == enqueued.execution_id
    assert [s.name for s in again.signals] == ["approved"]


async def test_parking_for_an_unrelated_signal_stays_parked(conveyor: Conveyor) -> None:
    await conveyor.apply(LINEAR)
    enqueued = await conveyor.execute("linear")
    [claimed] = await conveyor.store.claim("w1", lease_seconds=30)
    await conveyor.signal(enqueued.execution_id, "something-else")
    never = claimed.created_at.replace(year=9999)
    park = Changes(
        status=ExecutionStatus.WAITING,
        available_at=never,
        release=True,
        wake_signals=["approved"],
        events=[("execution.waiting", {})],
    )
    await conveyor.store.apply(claimed, park)
    assert await conveyor.store.claim("w2", lease_seconds=30) == []


def test_processes_creating_the_same_workspace_at_once_agree_on_it(database_url: str) -> None:
    """Every command creates the default workspace on first use; on PostgreSQL two commands
    started together (``conveyor run`` and ``executions list``) raced into a unique
    violation."""
    import subprocess
    import sys
    import time

    start = time.time() + 3  # all processes are past their imports by then
    code = (
        "import asyncio, time\n"
        "from conveyor.store import Database, Store\n"
        "async def main():\n"
        f"    s = Store(Database({database_url!r}))\n"
        f"    time.sleep(max(0, {start} - time.time()))\n"
        "    print(await s.workspace('shared'))\n"
        "    s.close()\n"
        "asyncio.run(main())\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    results = [p.communicate(timeout=60) for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, [err for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1
