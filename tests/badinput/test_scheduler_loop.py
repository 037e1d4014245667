"""The scheduler never spins (both backends): after a pass, the time it sleeps until is never
already past, neither while an occurrence waits for its jitter nor when a stored schedule
cannot be read any more (a zone this version does not know). Before, the loop woke again at
once, reading the database and logging a traceback as fast as it could."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import update

from conveyor.app import Conveyor
from conveyor.engine.triggers import ScheduleSpec
from conveyor.store.tables import schedules
from conveyor.triggers import cron
from conveyor.triggers.scheduler import Scheduler
from tests.integration.test_scheduler import HOUR, START, _schedules, app, definition, fires
from tests.support import FakeClock

__all__ = ["app"]  # the fixture, shared with the scheduler's own tests


async def test_the_scheduler_never_sleeps_until_a_time_already_past(
    app: tuple[Conveyor, FakeClock],
) -> None:
    conveyor, clock = app
    data = definition(jitter="50s")
    data["triggers"].append({"type": "schedule", "id": "broken", "cron": "0 * * * *"})
    await conveyor.apply(data)
    scheduler = Scheduler(conveyor)
    await scheduler.tick()
    nominal = START.replace(minute=0) + HOUR
    row = next(r for r in await conveyor.store.read(_schedules) if r["key"] == "tick")
    delay = cron.jitter(ScheduleSpec.model_validate(row["spec"]), row["id"], nominal)
    # The schedule's id is random, so the delay is anywhere in [0, 50 s): the case sits
    # halfway into it (a fixed second in was past the delay one run in fifty).
    assert delay > timedelta(0), delay

    def unreadable(conn: Any) -> None:
        spec = {"id": "broken", "cron": "0 * * * *", "timezone": "Mars/Olympus"}
        conn.execute(update(schedules).where(schedules.c.key == "broken").values(spec=spec))

    await conveyor.store.write(unreadable)
    clock.current = nominal + delay / 2  # due, within the jitter
    wake = await scheduler.tick()
    assert wake == nominal + delay, (wake, nominal + delay)
    clock.current = nominal + delay  # the jittered start: it fires, the broken one still fails
    wake = await scheduler.tick()
    assert [f[1] for f in await fires(conveyor)] == ["started"]
    assert wake is None or wake > clock.now(), (wake, clock.now())
