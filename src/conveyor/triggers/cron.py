"""When a schedule fires: its occurrences (nominal UTC instants), pure, with no I/O.

Cron expressions are wall-clock times in the schedule's zone. They are evaluated by croniter
over *naive* local times, each then turned into one instant by :func:`resolve`:

- a local time that occurs twice (clocks go back) is its first occurrence (``fold=0``);
- a local time that does not occur (clocks go forward) is the first instant after the gap,
  and every match inside one gap collapses into that one instant.

``every`` schedules follow elapsed time from an anchor (the schedule's creation), never the
wall clock, so daylight saving does not move them. The nominal time is an occurrence's
identity (the key of its fire row); jitter only delays when it starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from conveyor.engine.triggers import ScheduleSpec

TICK = timedelta(microseconds=1)


def resolve(local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of the naive wall-clock time ``local`` in ``zone`` (see module doc)."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == local:
        return first  # exists (and, if repeated, this is its first occurrence)
    # In a gap: fold=1 reads it with the offset after the change (an instant before the
    # transition), fold=0 with the offset before it (after the transition). The transition
    # lies between the two: find it to the second.
    low = int(local.replace(tzinfo=zone, fold=1).timestamp())
    high = int(first.timestamp()) + 1
    after = first.astimezone(zone).utcoffset()
    while high - low > 1:  # offset(low) is the old one, offset(high) the new one
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def occurrences(spec: ScheduleSpec, after: datetime, anchor: datetime) -> Iterator[datetime]:
    """The schedule's nominal instants strictly after ``after``, in order (UTC)."""
    if spec.every is not None:
        yield from _every(spec.every, after, anchor)
        return
    assert spec.cron is not None
    zone = ZoneInfo(spec.timezone)
    try:
        start = after.astimezone(zone).replace(tzinfo=None)
    except OverflowError:  # the last hours of 9999 UTC are 10000 in a zone east of it
        return
    from croniter import CroniterError, croniter  # with dateutil: only once a schedule has cron

    fields = spec.cron.split(" ")
    walker = croniter(spec.cron, start, second_at_beginning=len(fields) == 6)
    last = after
    while True:
        try:
            local = walker.get_next(datetime)
            instant = resolve(local, zone)
        # A date that never comes, or one after 9999 (croniter's date arithmetic says so
        # with a ValueError).
        except (CroniterError, OverflowError, ValueError):
            return
        # resolve() never goes backwards as local time goes forwards, so skipping what is
        # not later than the last instant is exactly the "once per gap / repeated hour" rule.
        if instant > last:
            last = instant
            yield instant


def _every(step: timedelta, after: datetime, anchor: datetime) -> Iterator[datetime]:
    k = max(1, (after - anchor) // step + 1)
    while True:
        try:
            yield anchor + k * step
        except OverflowError:  # past the year 9999
            return
        k += 1


def next_times(spec: ScheduleSpec, after: datetime, anchor: datetime, count: int) -> list[datetime]:
    """The next ``count`` nominal instants after ``after``."""
    found: list[datetime] = []
    for instant in occurrences(spec, after, anchor):
        found.append(instant)
        if len(found) >= count:
            break
    return found


def first_from(spec: ScheduleSpec, start: datetime, anchor: datetime) -> datetime | None:
    """The first nominal instant at or after ``start``."""
    return next(occurrences(spec, start - TICK, anchor), None)


def between(
    spec: ScheduleSpec, start: datetime, end: datetime, anchor: datetime, limit: int
) -> list[datetime]:
    """The nominal instants in [start, end), at most ``limit`` of them."""
    found: list[datetime] = []
    for instant in occurrences(spec, start - TICK, anchor):
        if instant >= end or len(found) >= limit:
            break
        found.append(instant)
    return found


def last_before(
    spec: ScheduleSpec, before: datetime, floor: datetime, anchor: datetime
) -> datetime | None:
    """The latest nominal instant in [floor, before), found by looking back over windows
    that double in size (never walking the whole range from ``floor``)."""
    width = timedelta(seconds=1)
    while True:
        start = max(floor, before - width)
        found = between(spec, start, before, anchor, 10_000)
        if found:
            return found[-1]
        if start <= floor:
            return None
        width *= 2


def count_between(
    spec: ScheduleSpec, start: datetime, end: datetime, anchor: datetime, cap: int
) -> int:
    """How many nominal instants lie in [start, end), counting at most ``cap``."""
    if spec.every is not None and start < end:
        first = first_from(spec, start, anchor)
        if first is None or first >= end:
            return 0
        return min(cap, (end - TICK - first) // spec.every + 1)
    return len(between(spec, start, end, anchor, cap))


def jitter(spec: ScheduleSpec, schedule_id: str, nominal: datetime) -> timedelta:
    """A stable delay in [0, spec.jitter) for one occurrence: the same in every process and
    on every retry of the tick, so the occurrence has one start time."""
    if spec.jitter is None or spec.jitter <= timedelta(0):
        return timedelta(0)
    seed = f"{schedule_id}|{nominal.astimezone(UTC).isoformat()}".encode()
    fraction = int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") / 2**64
    return timedelta(microseconds=int(spec.jitter / TICK * fraction))
