"""The database's clock as seen from this process: the system clock corrected by its measured
offset to the database, so that the times a process writes and compares (enqueue times,
timers, deadlines, which executions are due) agree with the lease clock that every process
shares (G4, G8) even when this machine's clock is off."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, select

from conveyor.store.database import StoreDialect

# Offsets below this (beyond the measurement's own uncertainty) are taken as none: clocks
# on one host, or kept by NTP, never jitter this process's time between measurements.
NOISE = timedelta(milliseconds=250)
SAMPLES = 3


class DatabaseClock:
    """``now()`` is the system time plus ``offset`` (zero until ``Store.align_clock``)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


def measure_offset(conn: Connection, dialect: StoreDialect) -> timedelta:
    """The database clock minus this process's clock. Each sample is uncertain by half its
    round trip (a loaded machine may take most of a second), so the quickest of a few is
    kept, and an offset within its uncertainty plus NOISE counts as none: on one host the
    measurement can then never invent an offset (a single sample on a loaded machine can be
    off by half a second: enough to record a step's end before the call that ended it)."""
    samples = []
    for _ in range(SAMPLES):
        before = datetime.now(UTC)
        database_now: datetime = conn.execute(select(dialect.now())).scalar_one()
        after = datetime.now(UTC)
        samples.append((after - before, database_now - (before + (after - before) / 2)))
    round_trip, offset = min(samples)
    return offset if abs(offset) > NOISE + round_trip / 2 else timedelta(0)
