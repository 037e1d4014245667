"""The invariant checker (tests/invariants.py) can fail: a clean run passes it, and each
kind of damage done to the rows afterwards is reported, on both databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, insert, select, update

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.store.tables import events, executions, schedule_fires, schedules, steps
from conveyor.worker import Worker
from tests.invariants import LimitSampler, Snapshot, check

FLOW = {
    "name": "checked",
    "nodes": [
        {"id": "a", "type": "transform", "config": {"output": 1}},
        {"id": "b", "type": "transform", "needs": ["a"], "config": {"output": 2}},
    ],
    "triggers": [{"type": "schedule", "id": "nightly", "cron": "0 3 * * *"}],
}


async def finished_execution(conveyor: Conveyor) -> str:
    await conveyor.apply(FLOW)
    execution_id = (await conveyor.execute("checked", {})).execution_id
    worker = Worker(conveyor.store, conveyor.registry, SystemClock())
    assert str(await asyncio.wait_for(worker.run_one(execution_id), 30)) == "succeeded"
    return execution_id


def _step(conn: Connection, eid: str, node: str) -> dict[str, Any]:
    row = conn.execute(
        select(steps).where(steps.c.execution_id == eid, steps.c.node_id == node)
    ).mappings()
    return dict(next(iter(row)))


def twice(conn: Connection, eid: str) -> None:
    row = _step(conn, eid, "b")
    row.pop("id")
    conn.execute(insert(steps), {**row, "attempt": 2})


def gap(conn: Connection, eid: str) -> None:
    conn.execute(
        update(events).where(events.c.execution_id == eid, events.c.seq == 2).values(seq=99)
    )


def after_end(conn: Connection, eid: str) -> None:
    last = conn.execute(select(executions.c.event_seq).where(executions.c.id == eid)).scalar()
    template = conn.execute(select(events).where(events.c.execution_id == eid)).mappings()
    row = {**dict(next(iter(template))), "seq": last + 1, "type": "execution.paused"}
    row.pop("id")
    conn.execute(insert(events), row)
    conn.execute(update(executions).where(executions.c.id == eid).values(event_seq=last + 1))


def leased(conn: Connection, eid: str) -> None:
    conn.execute(update(executions).where(executions.c.id == eid).values(lease_owner="ghost"))


def stuck(conn: Connection, eid: str) -> None:
    conn.execute(update(executions).where(executions.c.id == eid).values(status="running"))


def out_of_order(conn: Connection, eid: str) -> None:
    # b's start event moved before a's end: b started before its upstream finished.
    rows = {
        (r["type"], r["data"].get("node_id")): r["seq"]
        for r in conn.execute(select(events).where(events.c.execution_id == eid)).mappings()
    }
    a_end, b_start = rows["step.succeeded", "a"], rows["step.started", "b"]
    for seq, new in ((a_end, -1), (b_start, a_end), (-1, b_start)):
        conn.execute(
            update(events).where(events.c.execution_id == eid, events.c.seq == seq).values(seq=new)
        )


def miscounted(conn: Connection, eid: str) -> None:
    conn.execute(update(executions).where(executions.c.id == eid).values(status="failed"))


def double_fire(conn: Connection, eid: str) -> None:
    # Two occurrences of a schedule claim the same execution.
    schedule_id = conn.execute(select(schedules.c.id)).scalars().first()
    created = conn.execute(select(executions.c.created_at).where(executions.c.id == eid)).scalar()
    for minute in (1, 2):
        conn.execute(
            insert(schedule_fires),
            {
                "schedule_id": schedule_id,
                "nominal_at": created + timedelta(minutes=minute),
                "status": "started",
                "execution_id": eid,
                "created_at": created,
            },
        )


DAMAGE: dict[str, tuple[Callable[[Connection, str], None], str]] = {
    "a step succeeded twice": (twice, "succeeded 2 times"),
    "a gap in the events": (gap, "event ids"),
    "an event after the end": (after_end, "events after it finished"),
    "a lease on a finished execution": (leased, "yet leased to ghost"),
    "still running": (stuck, "still running"),
    "a step before its upstream": (out_of_order, "before ['a'] ended"),
    "counters that disagree": (miscounted, "counted"),
    "an occurrence started twice": (double_fire, "schedule occurrences"),
}


async def test_a_clean_run_passes(conveyor: Conveyor) -> None:
    await finished_execution(conveyor)
    assert check(conveyor.store.db) == []


@pytest.mark.parametrize("damage", list(DAMAGE))
async def test_each_kind_of_damage_is_reported(conveyor: Conveyor, damage: str) -> None:
    execution_id = await finished_execution(conveyor)
    before = Snapshot(conveyor.store.db)
    harm, said = DAMAGE[damage]
    db = conveyor.store.db
    with db.write() as conn:
        harm(conn, execution_id)
    problems = check(db)
    assert any(said in p for p in problems), problems
    if harm in (stuck, miscounted, after_end):
        assert before.changed(), "the snapshot missed a finished execution changing"


async def test_the_sampler_sees_a_limit_exceeded(conveyor: Conveyor) -> None:
    execution_id = await finished_execution(conveyor)
    db = conveyor.store.db
    with db.write() as conn:
        row = dict(
            conn.execute(select(executions).where(executions.c.id == execution_id)).mappings().one()
        )
        for _ in range(2):
            copy = {**row, "id": uuid.uuid4().hex, "idempotency_key": None}
            conn.execute(
                insert(executions),
                {**copy, "status": "running", "concurrency_key": "k", "key_limit": 1},
            )
    with LimitSampler(db, interval=0.01) as sampler:
        for _ in range(500):
            if sampler.samples >= 2:
                break
            await asyncio.sleep(0.01)
    assert any("key k: 2 running, limit 1" in v for v in sampler.violations), sampler.violations
