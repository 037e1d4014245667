"""The one-statement writes (PostgreSQL: an enqueue of a version read before, a batch of
runner transitions) keep every promise of the usual way: they follow the workflow's
current version and status, keep idempotency keys, fence each execution by its lease and
number its events without gaps. On SQLite the same tests check the usual way."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from conveyor.app import Conveyor
from conveyor.engine.interfaces import Changes, EventRecord, StepFinish, StepStart
from conveyor.engine.state import ExecutionStatus, StepStatus
from conveyor.errors import Conflict, LeaseLost
from conveyor.nodes.builtin import build_registry
from conveyor.store import workflows
from conveyor.store.tables import events, executions, steps
from conveyor.store.tables import workflows as workflows_table


def flow(output: int) -> dict[str, object]:
    return {"name": "w", "nodes": [{"id": "a", "type": "transform", "config": {"output": output}}]}


async def test_an_enqueue_follows_the_current_version_and_status(
    conveyor: Conveyor, database_url: str
) -> None:
    await conveyor.apply(flow(1))
    assert (await conveyor.execute("w")).version == 1
    assert (await conveyor.execute("w")).version == 1  # the version read before
    await conveyor.apply(flow(2))
    assert (await conveyor.execute("w")).version == 2
    # Another process saves a version and archives the workflow: this one sees both.
    other = await Conveyor.open(database_url, build_registry())
    try:
        await other.apply(flow(3))
        assert (await conveyor.execute("w")).version == 3
        store = other.store
        await store.write(
            workflows.set_status, other.workspace_id, "w", "archived", store.clock.now()
        )
        with pytest.raises(Conflict, match="archived"):
            await conveyor.execute("w")
        await store.write(
            workflows.set_status, other.workspace_id, "w", "active", store.clock.now()
        )
    finally:
        other.close()
    enqueued = await conveyor.execute("w", {"n": 1})
    assert enqueued.created and enqueued.version == 3
    assert (await conveyor.execute("w", version=1)).version == 1
    with conveyor.store.db.read() as conn:
        count = len(conn.execute(select(executions.c.id)).all())
        queued = conn.execute(select(events.c.execution_id, events.c.seq)).all()
    assert count == 6
    assert sorted(seq for _, seq in queued) == [1] * 6


async def test_a_key_used_before_gives_the_first_execution_and_one_event(
    conveyor: Conveyor,
) -> None:
    await conveyor.apply(flow(1))
    heard: list[EventRecord] = []
    conveyor.store.listeners.append(heard.extend)
    first = await conveyor.execute("w", {"n": 1}, idempotency_key="k1")
    again = await conveyor.execute("w", {"n": 2}, idempotency_key="k1")
    other = await conveyor.execute("w", {"n": 3}, idempotency_key="k2")
    unkeyed = await conveyor.execute("w", {"n": 4})
    assert first.created and not again.created and other.created and unkeyed.created
    assert again.execution_id == first.execution_id
    assert len({first.execution_id, other.execution_id, unkeyed.execution_id}) == 3
    assert [(r.execution_id, r.type) for r in heard] == [
        (e.execution_id, "execution.queued") for e in (first, other, unkeyed)
    ]
    detail = await conveyor.store.get_execution(conveyor.workspace_id, first.execution_id)
    assert detail["input"] == {"n": 1}
    with conveyor.store.db.read() as conn:
        assert len(conn.execute(select(events.c.id)).all()) == 3


async def test_a_batch_of_transitions_fences_each_execution_alone(conveyor: Conveyor) -> None:
    await conveyor.apply(flow(1))
    for n in range(3):
        await conveyor.execute("w", {"n": n})
    claimed = await conveyor.store.claim("w1", lease_seconds=30, limit=3)
    assert len(claimed) == 3
    lost = claimed[1]
    with conveyor.store.db.write() as conn:  # another owner took this one
        conn.execute(update(executions).where(executions.c.id == lost.id).values(lease_owner="x"))
    now = conveyor.store.clock.now()

    def start() -> Changes:
        changes = Changes(
            started=[StepStart("a", "transform", 1, {"output": 1}, now, index=0)],
            events=[("execution.started", {}), ("step.started", {"node_id": "a"})],
        )
        changes.count("steps_running")
        return changes

    outcomes = await asyncio.gather(
        *(conveyor.store.apply(c, start()) for c in claimed), return_exceptions=True
    )
    assert [isinstance(o, LeaseLost) for o in outcomes] == [False, True, False]
    finish = Changes(
        finished=[StepFinish("a", 1, StepStatus.SUCCEEDED, now, output={"x": 1})],
        events=[("step.succeeded", {"node_id": "a"})],
    )
    finish.count("steps_running", -1)
    finish.count("steps_succeeded")
    await conveyor.store.apply(claimed[0], finish)
    with conveyor.store.db.read() as conn:
        seqs = {
            c.id: [
                tuple(r)
                for r in conn.execute(
                    select(events.c.seq, events.c.type)
                    .where(events.c.execution_id == c.id)
                    .order_by(events.c.seq)
                )
            ]
            for c in claimed
        }
        rows = sorted(
            (r.execution_id, r.status, r.output)
            for r in conn.execute(select(steps.c.execution_id, steps.c.status, steps.c.output))
        )
        counters = dict(conn.execute(select(executions.c.id, executions.c.steps_succeeded)).all())
    held = [claimed[0].id, claimed[2].id]
    assert seqs[lost.id] == [(1, "execution.queued")]
    assert seqs[held[1]] == [(1, "execution.queued"), (2, "execution.started"), (3, "step.started")]
    assert seqs[held[0]] == seqs[held[1]] + [(4, "step.succeeded")]
    assert rows == sorted([(held[0], "succeeded", {"x": 1}), (held[1], "running", None)])
    assert counters == {held[0]: 1, lost.id: 0, held[1]: 0}


async def _run_to_final(conveyor: Conveyor, cancel_first: bool) -> tuple[str, dict[str, object]]:
    """One execution claimed, started at a known time and finished 1.5 s later as
    succeeded; ``cancel_first``: a cancel request lands just before the final write."""
    await conveyor.apply(flow(1))
    enqueued = await conveyor.execute("w", {})
    [claimed] = await conveyor.store.claim("w1", lease_seconds=30)
    started = conveyor.store.clock.now()
    first = Changes(status=ExecutionStatus.RUNNING, started_at=started)
    first.events.append(("execution.started", {}))
    await conveyor.store.apply(claimed, first)
    if cancel_first:
        with conveyor.store.db.write() as conn:
            conn.execute(
                update(executions)
                .where(executions.c.id == enqueued.execution_id)
                .values(cancel_requested=True)
            )
    final = Changes(
        status=ExecutionStatus.SUCCEEDED,
        finished_at=started + timedelta(seconds=1.5),
        result={"a": 1},
        release=True,
        events=[("execution.succeeded", {"status": "succeeded"})],
    )
    await conveyor.store.apply(claimed, final)
    with conveyor.store.db.read() as conn:
        stats = dict(
            conn.execute(
                select(
                    workflows_table.c.executions_finished,
                    workflows_table.c.executions_succeeded,
                    workflows_table.c.executions_cancelled,
                    workflows_table.c.duration_total_ms,
                    workflows_table.c.last_executed_at,
                )
            )
            .mappings()
            .one()
        )
        last = conn.execute(
            select(events.c.type)
            .where(events.c.execution_id == enqueued.execution_id)
            .order_by(events.c.seq.desc())
        ).first()
    detail = await conveyor.store.get_execution(conveyor.workspace_id, enqueued.execution_id)
    assert last is not None
    stats["status"], stats["last_event"], stats["error"] = (
        detail["status"],
        last.type,
        detail["error"],
    )
    stats["finished_at"] = started + timedelta(seconds=1.5)
    return enqueued.execution_id, stats


async def test_a_final_write_counts_the_workflow_statistics(conveyor: Conveyor) -> None:
    _, stats = await _run_to_final(conveyor, cancel_first=False)
    assert stats["status"] == "succeeded" and stats["last_event"] == "execution.succeeded"
    assert (stats["executions_finished"], stats["executions_succeeded"]) == (1, 1)
    assert stats["executions_cancelled"] == 0 and stats["duration_total_ms"] == 1500
    assert stats["last_executed_at"] == stats["finished_at"]


async def test_a_cancel_landing_before_the_final_write_still_wins(conveyor: Conveyor) -> None:
    _, stats = await _run_to_final(conveyor, cancel_first=True)
    assert stats["status"] == "cancelled" and stats["last_event"] == "execution.cancelled"
    assert stats["error"] == {"type": "cancelled", "message": "cancelled by request"}
    assert (stats["executions_finished"], stats["executions_cancelled"]) == (1, 1)
    assert stats["executions_succeeded"] == 0 and stats["duration_total_ms"] == 1500


async def test_every_commit_is_counted_one_statement_ones_too(conveyor: Conveyor) -> None:
    """``Store.commits.write_transactions`` (logged by a stopping worker, read by the
    benchmarks) counts a one-statement write in autocommit as the commit it is."""
    await conveyor.apply(flow(1))
    await conveyor.execute("w")  # the first reads the version the usual way
    counted = conveyor.store.commits.write_transactions
    for _ in range(3):
        await conveyor.execute("w")  # on PostgreSQL: one statement each
    assert conveyor.store.commits.write_transactions == counted + 3
