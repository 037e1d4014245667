"""``Conveyor.execute_many``: many executions of one workflow in one transaction, each with
its own input, idempotency key and priority; a refused item is refused alone (both
databases)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from conveyor import Submission
from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.errors import Conflict, ConveyorError, InputError, NotFound
from conveyor.store import workflows
from conveyor.store.tables import events, executions
from conveyor.worker import Worker
from tests.invariants import check

FLOW = {
    "name": "batched",
    "input": {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
    },
    "nodes": [{"id": "a", "type": "transform", "config": {"output": "{{ input.n * 2 }}"}}],
}


def count(conveyor: Conveyor, table: object) -> int:
    with conveyor.store.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


async def test_a_batch_is_enqueued_in_order_and_runs(conveyor: Conveyor) -> None:
    await conveyor.apply(FLOW)
    batch = [Submission({"n": i}, idempotency_key=f"k{i}", priority=i % 3) for i in range(300)]
    enqueued = await conveyor.execute_many("batched", batch)
    assert all(not isinstance(e, Exception) and e.created for e in enqueued)
    ids = [e.execution_id for e in enqueued if not isinstance(e, Exception)]
    assert len(set(ids)) == 300
    assert count(conveyor, executions) == 300
    assert count(conveyor, events) == 300  # one execution.queued each
    with conveyor.store.db.read() as conn:
        rows = dict(conn.execute(select(executions.c.id, executions.c.priority)).all())
    assert [rows[i] for i in ids] == [i % 3 for i in range(300)]

    worker = Worker(
        conveyor.store, conveyor.registry, SystemClock(), poll=timedelta(milliseconds=50)
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        for _ in range(3000):
            with conveyor.store.db.read() as conn:
                left = conn.execute(
                    select(func.count()).where(executions.c.status != "succeeded")
                ).scalar_one()
            if not left:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 20)
    assert left == 0
    first = await conveyor.store.get_execution(conveyor.workspace_id, ids[7])
    assert first["result"] == {"a": 14}
    assert check(conveyor.store.db) == []


async def test_keys_already_used_give_the_same_executions(conveyor: Conveyor) -> None:
    await conveyor.apply(FLOW)
    first = await conveyor.execute_many(
        "batched", [Submission({"n": 1}, idempotency_key="a"), Submission({"n": 2})]
    )
    again = await conveyor.execute_many(
        "batched",
        [
            Submission({"n": 1}, idempotency_key="a"),
            Submission({"n": 3}, idempotency_key="b"),
            Submission({"n": 3}, idempotency_key="b"),  # twice in one batch: one execution
        ],
    )
    assert [(e.execution_id, e.created) for e in again if not isinstance(e, Exception)] == [
        (first[0].execution_id, False),  # type: ignore[union-attr]
        (again[1].execution_id, True),  # type: ignore[union-attr]
        (again[1].execution_id, False),  # type: ignore[union-attr]
    ]
    assert count(conveyor, executions) == 3


async def test_a_refused_item_is_refused_alone(conveyor: Conveyor) -> None:
    await conveyor.apply(FLOW)
    results = await conveyor.execute_many(
        "batched",
        [
            Submission({"n": 1}),
            Submission({"n": "not a number"}),  # breaks the declared input schema
            Submission({"n": 2}, idempotency_key="x" * 201),
            Submission({"n": 3}),
        ],
    )
    refused = [isinstance(r, ConveyorError) for r in results]
    assert refused == [False, True, True, False], results
    assert type(results[1]).__name__ == "InvalidInput" and isinstance(results[2], InputError)
    assert count(conveyor, executions) == 2
    assert count(conveyor, events) == 2  # the refused ones announced nothing


async def test_a_whole_batch_is_refused_for_an_unknown_or_archived_workflow(
    conveyor: Conveyor,
) -> None:
    with pytest.raises(NotFound):
        await conveyor.execute_many("nope", [Submission({"n": 1})])
    await conveyor.apply(FLOW)
    store = conveyor.store
    await store.write(
        workflows.set_status, conveyor.workspace_id, "batched", "archived", store.clock.now()
    )
    results = await conveyor.execute_many("batched", [Submission({"n": 1})] * 2)
    assert all(isinstance(r, Conflict) for r in results)
    with pytest.raises(InputError, match="at most"):
        await conveyor.execute_many("batched", [Submission({"n": 1})] * 10_001)
    assert count(conveyor, executions) == 0


async def test_concurrent_batches_with_the_same_keys_make_each_execution_once(
    conveyor: Conveyor, database_url: str
) -> None:
    """Two clients submit the same keyed batch at once: on PostgreSQL the second one's
    multi-row insert meets the first one's keys and falls back to one by one."""
    await conveyor.apply(FLOW)
    other = await Conveyor.open(database_url, conveyor.registry)
    try:
        batch = [Submission({"n": i}, idempotency_key=f"same-{i}") for i in range(200)]
        first, second = await asyncio.gather(
            conveyor.execute_many("batched", batch), other.execute_many("batched", batch)
        )
    finally:
        other.close()
    ids = [[e.execution_id for e in r if not isinstance(e, Exception)] for r in (first, second)]
    assert ids[0] == ids[1] and len(set(ids[0])) == 200
    created = [e.created for r in (first, second) for e in r if not isinstance(e, Exception)]
    assert sum(created) == 200
    assert count(conveyor, executions) == 200
    assert count(conveyor, events) == 200
    assert check(conveyor.store.db, settled=False) == []  # queued: no worker runs here
