"""The scheduler's tick on a fake clock (both backends): exactly once, catch-up and overlap
policies, paused workflows, occurrences that cannot start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.store.tables import executions, schedule_fires, schedules
from conveyor.triggers.scheduler import Scheduler
from tests.support import FakeClock

START = datetime(2026, 5, 4, 9, 59, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[tuple[Conveyor, FakeClock]]:
    clock = FakeClock(START)
    conveyor = await Conveyor.open(database_url, build_registry(), clock=clock)
    try:
        yield conveyor, clock
    finally:
        conveyor.close()


def definition(**schedule: Any) -> dict[str, Any]:
    spec = {"type": "schedule", "id": "tick", "cron": "0 * * * *", **schedule}
    return {
        "name": "scheduled",
        "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
        "triggers": [spec],
    }


async def fires(conveyor: Conveyor) -> list[tuple[datetime, str, str | None, str | None]]:
    def read(conn: Any) -> list[Any]:
        f = schedule_fires.c
        query = select(f.nominal_at, f.status, f.reason, f.execution_id).order_by(f.nominal_at)
        return [tuple(r) for r in conn.execute(query)]

    return await conveyor.store.read(read)


async def scheduled_executions(conveyor: Conveyor) -> list[dict[str, Any]]:
    def read(conn: Any) -> list[dict[str, Any]]:
        query = select(executions).where(executions.c.trigger_type == "schedule")
        return [dict(r) for r in conn.execute(query.order_by(executions.c.created_at)).mappings()]

    return await conveyor.store.read(read)


async def set_next(conveyor: Conveyor, value: datetime) -> None:
    def write(conn: Any) -> None:
        conn.execute(update(schedules).values(next_fire_at=value))

    await conveyor.store.write(write)


async def finish_all(conveyor: Conveyor) -> None:
    for execution in await scheduled_executions(conveyor):
        if execution["status"] == "queued":
            await conveyor.cancel(execution["id"])


async def test_each_occurrence_starts_one_execution(app: tuple[Conveyor, FakeClock]) -> None:
    conveyor, clock = app
    await conveyor.apply(definition(cron="*/10 * * * * *", overlap="allow"))
    scheduler = Scheduler(conveyor)
    assert await scheduler.tick() == START + timedelta(seconds=10)  # first: after creation
    for _ in range(6):
        clock.current += timedelta(seconds=5)
        await scheduler.tick()
        await scheduler.tick()  # a second scheduler at the same moment finds nothing to do
        await Scheduler(conveyor).tick()
    recorded = await fires(conveyor)
    assert [r[0] for r in recorded] == [START + timedelta(seconds=10 * k) for k in (1, 2, 3)]
    assert {r[1] for r in recorded} == {"started"}
    started = await scheduled_executions(conveyor)
    assert sorted(e["id"] for e in started) == sorted(str(r[3]) for r in recorded)
    first = started[0]
    assert first["trigger_id"] is not None
    key = f"schedule:{first['trigger_id']}:{recorded[0][0].isoformat()}"
    assert first["idempotency_key"] == key


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        # Five hourly occurrences passed while no scheduler ran (10:00 .. 14:00), and the
        # scheduler comes back at 14:30: all five are late (grace 60s).
        ("skip", ["missed"] * 5),
        ("latest", ["missed"] * 4 + ["started"]),
        ("all", ["started"] * 5),
    ],
)
async def test_catch_up_after_downtime(
    app: tuple[Conveyor, FakeClock], catchup: str, expected: list[str]
) -> None:
    conveyor, clock = app
    await conveyor.apply(definition(catchup=catchup, overlap="allow"))
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    clock.current = START.replace(minute=0) + 5 * HOUR + timedelta(minutes=31)
    await scheduler.tick()
    recorded = await fires(conveyor)
    hours = [START.replace(minute=0) + HOUR * k for k in range(1, 6)]
    assert [r[0] for r in recorded] == hours
    assert [r[1] for r in recorded] == expected
    for _nominal, status, reason, _execution in recorded:
        assert (status == "missed") == (reason is not None)
    assert len(await scheduled_executions(conveyor)) == expected.count("started")
    # Nothing more until the next hour.
    await scheduler.tick()
    assert len(await fires(conveyor)) == 5


async def test_catch_up_all_keeps_to_its_window(app: tuple[Conveyor, FakeClock]) -> None:
    conveyor, clock = app
    await conveyor.apply(definition(catchup="all", catchup_window="2h45m", overlap="allow"))
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    clock.current = START.replace(minute=0) + 5 * HOUR + timedelta(minutes=31)  # 14:31
    await scheduler.tick()
    statuses = [r[1] for r in await fires(conveyor)]
    assert statuses == ["missed", "missed", "started", "started", "started"]


async def test_a_long_downtime_is_summarised(app: tuple[Conveyor, FakeClock]) -> None:
    conveyor, clock = app
    await conveyor.apply(definition(cron="* * * * *"))
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    clock.current += timedelta(days=2, seconds=30)  # 2,880 minutes: the last one timely
    await scheduler.tick()
    recorded = await fires(conveyor)
    # 1,000 rows one by one, one summary row for the other 1,879, the timely one started.
    assert len(recorded) == 1002
    (summary,) = [r for r in recorded if r[2] and "recorded as this one row" in r[2]]
    assert summary[2].startswith("1879 occurrences")
    assert [r[1] for r in recorded] == ["missed"] * 1001 + ["started"]


async def test_overlap_skip_and_allow(app: tuple[Conveyor, FakeClock]) -> None:
    conveyor, clock = app
    await conveyor.apply(definition(cron="*/10 * * * * *"))
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    for _ in range(3):
        clock.current += timedelta(seconds=10)
        await scheduler.tick()
    assert [r[1] for r in await fires(conveyor)] == ["started", "skipped", "skipped"]
    assert "still running" in str((await fires(conveyor))[1][2])
    await finish_all(conveyor)
    clock.current += timedelta(seconds=10)
    await scheduler.tick()
    assert [r[1] for r in await fires(conveyor)][-1] == "started"


@pytest.mark.parametrize("policy", ["buffer_one", "buffer_all"])
async def test_overlap_buffers(app: tuple[Conveyor, FakeClock], policy: str) -> None:
    conveyor, clock = app
    await conveyor.apply(definition(cron="*/10 * * * * *", overlap=policy))
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    for _ in range(3):
        clock.current += timedelta(seconds=10)
        await scheduler.tick()
    statuses = [r[1] for r in await fires(conveyor)]
    if policy == "buffer_one":
        assert statuses == ["started", "buffered", "skipped"]
    else:
        assert statuses == ["started", "buffered", "buffered"]
    await finish_all(conveyor)
    await scheduler.tick()  # the previous one finished: the oldest buffered one starts
    statuses = [r[1] for r in await fires(conveyor)]
    assert statuses[:2] == ["started", "started"]
    assert statuses[2] == ("skipped" if policy == "buffer_one" else "buffered")
    assert len(await scheduled_executions(conveyor)) == 2


async def test_overlap_cancel_previous(app: tuple[Conveyor, FakeClock]) -> None:
    conveyor, clock = app
    await conveyor.apply(definition(cron="*/10 * * * * *", overlap="cancel_previous"))
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    for _ in range(2):
        clock.current += timedelta(seconds=10)
        await scheduler.tick()
    started = await scheduled_executions(conveyor)
    assert [e["status"] for e in started] == ["cancelled", "queued"]
    assert [r[1] for r in await fires(conveyor)] == ["started", "started"]


async def test_a_paused_workflow_records_skipped_occurrences(
    app: tuple[Conveyor, FakeClock],
) -> None:
    conveyor, clock = app
    ref = await conveyor.apply(definition())
    from conveyor.store import workflows

    await conveyor.store.write(
        workflows.set_status, conveyor.workspace_id, ref.workflow_id, "paused", clock.now()
    )
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    clock.current += HOUR
    await scheduler.tick()
    (row,) = await fires(conveyor)
    assert row[1] == "skipped" and row[2] == "the workflow is paused"
    assert await scheduled_executions(conveyor) == []


async def test_an_input_the_workflow_refuses_is_recorded(app: tuple[Conveyor, FakeClock]) -> None:
    conveyor, clock = app
    data = definition(input={"n": "not a number"})
    data["input"] = {"type": "object", "properties": {"n": {"type": "integer"}}}
    await conveyor.apply(data)
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    clock.current += timedelta(minutes=1, seconds=5)
    await scheduler.tick()
    (row,) = await fires(conveyor)
    assert row[1] == "skipped" and str(row[2]).startswith("could not start")
    assert await scheduled_executions(conveyor) == []


async def test_a_broken_schedule_does_not_stop_the_others(
    app: tuple[Conveyor, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    conveyor, clock = app
    data = definition()
    data["triggers"].append({"type": "schedule", "id": "broken", "cron": "0 * * * *"})
    await conveyor.apply(data)

    def corrupt(conn: Any) -> None:
        conn.execute(
            update(schedules).where(schedules.c.key == "broken").values(spec={"id": "broken"})
        )

    await conveyor.store.write(corrupt)
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    clock.current += timedelta(minutes=1, seconds=5)
    await scheduler.tick()
    assert [r[1] for r in await fires(conveyor)] == ["started"]
    assert "schedule" in caplog.text and "failed" in caplog.text


async def test_jitter_delays_the_start_not_the_identity(app: tuple[Conveyor, FakeClock]) -> None:
    from conveyor.engine.triggers import ScheduleSpec
    from conveyor.triggers import cron

    conveyor, clock = app
    await conveyor.apply(definition(jitter="50s"))
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    (row,) = [r for r in await scheduler.store.read(_schedules)]
    nominal = START.replace(minute=0) + HOUR
    delay = cron.jitter(ScheduleSpec.model_validate(row["spec"]), row["id"], nominal)
    clock.current = nominal + delay - timedelta(milliseconds=1)
    await scheduler.tick()
    assert await fires(conveyor) == []
    clock.current = nominal + delay
    await scheduler.tick()
    (fire,) = await fires(conveyor)
    assert fire[0] == nominal and fire[1] == "started"


def _schedules(conn: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(select(schedules)).mappings()]
