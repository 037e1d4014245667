"""Schedules with real ``conveyor worker`` processes (each runs the scheduler), both backends:
three schedulers at once start exactly one execution per occurrence; a scheduler stopped
for five intervals and restarted follows each catch-up policy exactly."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from conveyor.app import Conveyor
from conveyor.store.tables import executions, schedule_fires, schedules
from conveyor.triggers.schedules import Schedules
from tests.e2e.conftest import Side, eventually
from tests.e2e.processes import Workers

FAST_POLL = {"CONVEYOR_SCHEDULER_POLL_SECONDS": "0.2"}


def fire_rows(side: Side, schedule_id: str) -> list[dict[str, Any]]:
    f = schedule_fires.c
    query = select(schedule_fires).where(f.schedule_id == schedule_id).order_by(f.nominal_at)
    with side.db.read() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def started_by(side: Side, schedule_id: str) -> list[dict[str, Any]]:
    query = select(executions).where(executions.c.trigger_id == schedule_id)
    with side.db.read() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def schedule_rows(side: Side) -> dict[str, dict[str, Any]]:
    with side.db.read() as conn:
        return {r["key"]: dict(r) for r in conn.execute(select(schedules)).mappings()}


@pytest.mark.timeout(150)
async def test_three_schedulers_start_one_execution_per_occurrence(
    app: Conveyor, side: Side, workers: Workers
) -> None:
    pool = [workers.start(concurrency=4, **FAST_POLL) for _ in range(3)]
    await eventually(lambda: all(w.connected() for w in pool), within=60, what="three workers up")
    await app.apply(
        {
            "name": "every-second",
            "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
            "triggers": [
                {"type": "schedule", "id": "tick", "cron": "*/1 * * * * *", "overlap": "allow"}
            ],
        }
    )
    schedule_id = schedule_rows(side)["tick"]["id"]
    await eventually(
        lambda: len(fire_rows(side, schedule_id)) >= 10,
        within=90,
        what="ten occurrences fired",
        diagnose=workers.logs,
    )
    await Schedules(app).set_enabled(schedule_id, False)
    settled = len(fire_rows(side, schedule_id))
    # A tick already under way when the schedule was disabled may still commit: wait until
    # the count holds still for a while.
    for _ in range(3):
        await asyncio.sleep(1)
        current = len(fire_rows(side, schedule_id))
        if current == settled:
            break
        settled = current

    fires = fire_rows(side, schedule_id)
    nominals = [f["nominal_at"] for f in fires]
    assert all(f["status"] == "started" for f in fires), [(f["status"], f["reason"]) for f in fires]
    # Every second from the first occurrence to the last: no gap, no duplicate.
    assert nominals == [nominals[0] + timedelta(seconds=k) for k in range(len(nominals))]
    started = started_by(side, schedule_id)
    assert sorted(e["id"] for e in started) == sorted(f["execution_id"] for f in fires)
    keys = Counter(e["idempotency_key"] for e in started)
    assert len(keys) == len(started) and all(e["trigger_type"] == "schedule" for e in started)
    ids = [e["id"] for e in started]
    await eventually(
        lambda: set(side.statuses(ids).values()) == {"succeeded"},
        within=60,
        what="every scheduled execution succeeded",
        diagnose=workers.logs,
    )
    assert all(w.alive for w in pool), workers.logs()
    by_process = [w.log_text().count(f"schedule {schedule_id}:") for w in pool]
    print(f"{len(fires)} occurrences; passes that fired some, per process: {by_process}")


async def test_a_restarted_scheduler_follows_each_catch_up_policy(
    app: Conveyor, side: Side, workers: Workers
) -> None:
    # Hourly at a minute about half an hour away from now, so no occurrence is ever close
    # to "now" while the test runs: each one is clearly late or clearly in the future.
    minute = (datetime.now(UTC).minute + 30) % 60
    hourly = {"type": "schedule", "cron": f"{minute} * * * *", "overlap": "allow"}
    await app.apply(
        {
            "name": "hourly",
            "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
            "triggers": [
                {**hourly, "id": "skip", "catchup": "skip"},
                {**hourly, "id": "latest", "catchup": "latest"},
                {**hourly, "id": "all", "catchup": "all"},
            ],
        }
    )
    first = workers.start(**FAST_POLL)

    def all_computed() -> dict[str, dict[str, Any]] | None:
        rows = schedule_rows(side)
        return rows if all(r["next_fire_at"] for r in rows.values()) else None

    computed = await eventually(
        all_computed,
        within=60,
        what="the scheduler computed each next fire time",
        diagnose=workers.logs,
    )
    first.send(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    upcoming = {key: row["next_fire_at"] for key, row in computed.items()}
    (upcoming_time,) = set(upcoming.values())
    # Five intervals pass while no scheduler runs.
    with side.db.write() as conn:
        conn.execute(update(schedules).values(next_fire_at=upcoming_time - 5 * HOUR))

    workers.start(**FAST_POLL)
    await eventually(
        lambda: all(r["next_fire_at"] == upcoming[k] for k, r in schedule_rows(side).items()),
        within=60,
        what="the restarted scheduler caught up",
        diagnose=workers.logs,
    )
    expected_times = [upcoming["skip"] - HOUR * k for k in (5, 4, 3, 2, 1)]
    expected = {
        "skip": ["missed"] * 5,
        "latest": ["missed"] * 4 + ["started"],
        "all": ["started"] * 5,
    }
    for key, row in schedule_rows(side).items():
        fires = fire_rows(side, row["id"])
        assert [f["nominal_at"] for f in fires] == expected_times, key
        assert [f["status"] for f in fires] == expected[key], key
        assert all(f["reason"] for f in fires if f["status"] == "missed")
        started = started_by(side, row["id"])
        assert sorted(e["id"] for e in started) == sorted(
            f["execution_id"] for f in fires if f["status"] == "started"
        )


HOUR = timedelta(hours=1)
