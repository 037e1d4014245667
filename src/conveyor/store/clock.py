"""The database's clock as seen from this process: the system clock corrected by its measured
offset to the database, so that the times a process writes and compares (enqueue times,
timers, deadlines, which executions are due) agree with the lease clock that every process
shares (G4, G8) even when this machine's clock is off."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select

from conveyor.store.database import StoreDialect

# Below this, an offset is the noise of the measurement's round trip (same-host clocks):
# ignored, so that this process's time never jitters between measurements.
NOISE = timedelta(milliseconds=250)


class DatabaseClock:
    """``now()`` is the system time plus ``offset`` (zero until ``Store.align_clock``)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


def measure_offset(conn: Connection, dialect: StoreDialect) -> timedelta:
    """The database clock minus this process's clock, taken at the middle of one query."""
    before = datetime.now(UTC)
    database_now: datetime = conn.execute(select(dialect.now())).scalar_one()
    after = datetime.now(UTC)
    offset = database_now - (before + (after - before) / 2)
    return offset if abs(offset) > NOISE else timedelta(0)
