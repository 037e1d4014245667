"""Schedules with real ``conveyor worker`` processes (each runs the scheduler), both backends:
three schedulers at once start exactly one execution per occurrence; a scheduler stopped
for five intervals and restarted follows each catch-up policy exactly."""

from __future__ import annotations

import asyncio
import itertools
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

    # A worker started with the scheduler turned off runs executions but fires nothing.
    quiet = workers.start(CONVEYOR_SCHEDULER="false", **FAST_POLL)
    manual = (await app.execute("hourly", {})).execution_id
    await eventually(
        lambda: side.statuses([manual]).get(manual) == "succeeded",
        within=60,
        what="the worker without a scheduler ran a manual execution",
        diagnose=workers.logs,
    )
    assert all(fire_rows(side, r["id"]) == [] for r in schedule_rows(side).values())
    assert "scheduler off" in quiet.log_text()
    quiet.send(signal.SIGTERM)
    assert quiet.wait(timeout=30) == 0

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


def runs(side: Side, execution_ids: list[str]) -> list[tuple[float, float]]:
    """(start, end) of the node call of each execution, by start."""
    wanted = set(execution_ids)
    return sorted(
        (c.started_at, c.ended_at or c.started_at) for c in side.calls() if c.execution_id in wanted
    )


def overlapping(spans: list[tuple[float, float]]) -> bool:
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


@pytest.mark.timeout(150)
async def test_overlap_policies_with_real_processes(
    app: Conveyor, side: Side, workers: Workers
) -> None:
    """Every second, a step of 2.5 s: each policy's documented behaviour, at once."""
    pool = [workers.start(concurrency=8, **FAST_POLL) for _ in range(2)]
    await eventually(lambda: all(w.connected() for w in pool), within=60, what="workers up")
    policies = ("skip", "buffer_one", "cancel_previous", "allow")
    for policy in policies:
        await app.apply(
            {
                "name": f"slow-{policy}",
                "nodes": [{"id": "w", "type": "e2e.work", "config": {"sleep": 2.5}}],
                "triggers": [
                    {"type": "schedule", "id": "s", "cron": "*/1 * * * * *", "overlap": policy}
                ],
            }
        )
    ids = {r["workflow_id"]: r["id"] for r in schedule_rows_all(side)}
    by_policy = {
        p: ids[(await app.store.find_version(app.workspace_id, f"slow-{p}")).workflow_id]
        for p in policies
    }
    await eventually(
        lambda: all(len(fire_rows(side, s)) >= 8 for s in by_policy.values()),
        within=90,
        what="eight occurrences of each schedule",
        diagnose=workers.logs,
    )
    for schedule_id in by_policy.values():
        await Schedules(app).set_enabled(schedule_id, False)

    def all_finished() -> bool:
        started = [e for s in by_policy.values() for e in started_by(side, s)]
        return all(e["status"] in ("succeeded", "cancelled") for e in started)

    await eventually(
        all_finished, within=60, what="every execution finished", diagnose=workers.logs
    )

    fires = {p: fire_rows(side, s) for p, s in by_policy.items()}
    statuses = {p: Counter(f["status"] for f in rows) for p, rows in fires.items()}
    spans = {p: runs(side, [e["id"] for e in started_by(side, s)]) for p, s in by_policy.items()}

    assert statuses["skip"]["skipped"] >= 2 and statuses["skip"]["started"] >= 1
    assert not overlapping(spans["skip"]), spans["skip"]
    assert all("still running" in f["reason"] for f in fires["skip"] if f["status"] == "skipped")

    assert statuses["buffer_one"]["skipped"] >= 1
    assert not overlapping(spans["buffer_one"]), spans["buffer_one"]
    reasons = {f["reason"] for f in fires["buffer_one"] if f["status"] == "skipped"}
    assert reasons == {"an occurrence was already buffered (overlap 'buffer_one')"}

    cancelled = started_by(side, by_policy["cancel_previous"])
    assert statuses["cancel_previous"]["started"] == len(fires["cancel_previous"])
    assert sum(e["status"] == "cancelled" for e in cancelled) >= len(cancelled) - 2

    assert statuses["allow"]["started"] == len(fires["allow"])
    assert overlapping(spans["allow"]), spans["allow"]


def schedule_rows_all(side: Side) -> list[dict[str, Any]]:
    with side.db.read() as conn:
        return [dict(r) for r in conn.execute(select(schedules)).mappings()]
