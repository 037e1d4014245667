"""A store keeps the database's time (store/clock.py): its clock's offset is measured
against the database, and same-host noise is no offset (both backends). The e2e test
tests/e2e/test_crash_scenarios.py runs workers an hour off under faketime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.store.clock import NOISE, DatabaseClock


async def test_a_store_measures_its_clock_against_the_database(conveyor: Conveyor) -> None:
    clock = conveyor.store.clock
    assert isinstance(clock, DatabaseClock)
    # As if the offset had been measured while this machine's clock was an hour behind.
    clock.offset = timedelta(hours=1)
    assert clock.now() - datetime.now(UTC) > timedelta(minutes=59)
    await conveyor.store.align_clock()
    # Same machine, same clock: what the round trip adds is noise, and no offset at all.
    assert clock.offset == timedelta(0)
    assert abs(clock.now() - datetime.now(UTC)) < NOISE


async def test_an_injected_clock_is_left_alone(database_url: str) -> None:
    class Fixed:
        def now(self) -> datetime:
            return datetime(2030, 1, 1, tzinfo=UTC)

        async def sleep(self, seconds: float) -> None:
            return None

    app = await Conveyor.open(database_url, build_registry(), clock=Fixed())
    try:
        await app.store.align_clock()
        assert app.store.clock.now() == datetime(2030, 1, 1, tzinfo=UTC)
    finally:
        app.close()
