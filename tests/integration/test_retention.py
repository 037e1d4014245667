"""Retention: finished executions older than the policy are deleted with their history."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.server import prune
from conveyor.store.controls import counted_duration_ms
from conveyor.store.tables import events, executions, steps, workflows
from conveyor.worker import Worker
from tests.invariants import _counters_agree


async def test_prune_deletes_old_finished_executions_only(conveyor: Conveyor) -> None:
    await conveyor.apply(
        {"name": "r", "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}]}
    )
    worker = Worker(conveyor.store, conveyor.registry, SystemClock())
    ids = []
    for _ in range(3):
        enqueued = await conveyor.execute("r")
        await worker.run_one(enqueued.execution_id)
        ids.append(enqueued.execution_id)
    queued = (await conveyor.execute("r")).execution_id
    now = conveyor.store.clock.now()
    with conveyor.store.db.write() as conn:  # two of them ran 30 days ago
        ran = conn.execute(
            select(executions.c.id, executions.c.started_at, executions.c.finished_at).where(
                executions.c.id.in_(ids[:2])
            )
        ).all()
        for r in ran:
            conn.execute(
                update(executions)
                .where(executions.c.id == r.id)
                .values(
                    started_at=r.started_at - timedelta(days=30),
                    finished_at=r.finished_at - timedelta(days=30),
                )
            )
    deleted = await conveyor.store.write(prune, "succeeded", timedelta(days=14), now)
    assert deleted == 2
    assert await conveyor.store.write(prune, "failed", timedelta(days=14), now) == 0

    def left(conn: object) -> tuple[set[str], int, int]:
        from sqlalchemy import Connection

        assert isinstance(conn, Connection)
        kept = set(conn.execute(select(executions.c.id)).scalars())
        orphan_steps = conn.execute(
            select(func.count()).select_from(steps).where(steps.c.execution_id.in_(ids[:2]))
        ).scalar_one()
        orphan_events = conn.execute(
            select(func.count()).select_from(events).where(events.c.execution_id.in_(ids[:2]))
        ).scalar_one()
        return kept, orphan_steps, orphan_events

    kept, orphan_steps, orphan_events = await conveyor.store.read(left)
    assert kept == {ids[2], queued}
    assert orphan_steps == 0 and orphan_events == 0
    # The workflow's counters (what the monitor's counts by status and the success rate
    # read) lost the two as well: they count the executions that exist.
    assert await conveyor.store.read(_counters_agree) == []
    listed = await conveyor.store.read(
        lambda conn: conn.execute(
            select(
                workflows.c.executions_succeeded,
                workflows.c.executions_finished,
                workflows.c.duration_total_ms,
            )
        ).one()
    )
    assert tuple(listed[:2]) == (1, 1)
    # ... and their durations (the average duration is total / finished): what is left is
    # the remaining execution's alone
    remaining = await conveyor.store.read(
        lambda conn: conn.execute(
            select(executions.c.started_at, executions.c.finished_at).where(
                executions.c.id == ids[2]
            )
        ).one()
    )
    assert listed[2] == counted_duration_ms(*remaining)


async def test_old_occurrences_and_deliveries_are_pruned_buffered_ones_kept(
    conveyor: Conveyor,
) -> None:
    from sqlalchemy import Connection, insert

    from conveyor.server import prune_trigger_history
    from conveyor.store.tables import schedule_fires, schedules, webhook_deliveries, webhooks

    ref = await conveyor.apply(
        {
            "name": "pruned",
            "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
            "triggers": [
                {"type": "schedule", "id": "s", "every": 60},
                {"type": "webhook", "id": "h", "auth": {"mode": "none"}},
            ],
        }
    )
    ids = {c.kind: c.id for c in ref.triggers}
    now = conveyor.store.clock.now()
    old, recent = now - timedelta(days=100), now - timedelta(days=1)

    def seed(conn: Connection) -> None:
        for i, (when, status) in enumerate(
            [(old, "started"), (old, "buffered"), (recent, "missed")]
        ):
            conn.execute(
                insert(schedule_fires),
                {
                    "schedule_id": ids["schedule"],
                    "nominal_at": when + timedelta(minutes=i),
                    "status": status,
                    "created_at": when,
                },
            )
        for when in (old, recent):
            conn.execute(
                insert(webhook_deliveries),
                {
                    "webhook_id": ids["webhook"],
                    "received_at": when,
                    "method": "POST",
                    "status_code": 202,
                    "outcome": "started",
                },
            )

    await conveyor.store.write(seed)
    assert await conveyor.store.write(prune_trigger_history, timedelta(days=90), now) == 1

    def left(conn: Connection) -> tuple[list[str], list[object]]:
        fires = conn.execute(select(schedule_fires.c.status).order_by(schedule_fires.c.id))
        received = conn.execute(select(webhook_deliveries.c.received_at))
        assert conn.execute(select(func.count()).select_from(schedules)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(webhooks)).scalar_one() == 1
        return list(fires.scalars()), list(received.scalars())

    statuses, deliveries = await conveyor.store.read(left)
    assert statuses == ["buffered", "missed"]
    assert deliveries == [recent]
