"""Schedule occurrences around daylight-saving changes, intervals and jitter (pure).

Two oracles that do not use our code: instants listed by hand from the zones' rules (2026:
Paris changes at 01:00 UTC on 29 March and 25 October; New York at 07:00 UTC on 8 March
and 06:00 UTC on 1 November), and a brute force that walks UTC minute by minute and fires
each cron slot at the first minute whose local wall time has reached it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conveyor.engine.triggers import ScheduleSpec
from conveyor.triggers import cron
from conveyor.triggers.policies import Due, overlap, plan_due

ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def spec(**fields: object) -> ScheduleSpec:
    return ScheduleSpec.model_validate({"id": "s", **fields})


def times(schedule: ScheduleSpec, after: datetime, count: int) -> list[datetime]:
    return cron.next_times(schedule, after, ANCHOR, count)


@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        # Paris, spring: 02:30 does not exist on 29 March; it fires at 03:00 CEST.
        (
            "Europe/Paris",
            "30 2 * * *",
            utc(2026, 3, 27, 12),
            [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
        ),
        # Paris, autumn: 02:30 happens twice on 25 October; it fires at the first (CEST).
        (
            "Europe/Paris",
            "30 2 * * *",
            utc(2026, 10, 23, 12),
            [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
        ),
        # New York, spring: 02:30 does not exist on 8 March; it fires at 03:00 EDT.
        (
            "America/New_York",
            "30 2 * * *",
            utc(2026, 3, 6, 12),
            [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)],
        ),
        # New York, autumn: 01:30 happens twice on 1 November; it fires once, at 01:30 EDT.
        (
            "America/New_York",
            "30 1 * * *",
            utc(2026, 10, 30, 12),
            [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
        ),
        # Every quarter hour across the Paris gap: 02:00, 02:15, 02:30, 02:45 and 03:00
        # collapse into one occurrence at 03:00 CEST (01:00 UTC).
        (
            "Europe/Paris",
            "*/15 * * * *",
            utc(2026, 3, 29, 0, 20),
            [
                utc(2026, 3, 29, 0, 30),
                utc(2026, 3, 29, 0, 45),
                utc(2026, 3, 29, 1, 0),
                utc(2026, 3, 29, 1, 15),
            ],
        ),
        # Hourly across the New York repeated hour: 01:00 once (EDT), then 02:00 EST.
        (
            "America/New_York",
            "0 * * * *",
            utc(2026, 11, 1, 3, 59),
            [utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), utc(2026, 11, 1, 7), utc(2026, 11, 1, 8)],
        ),
    ],
)
def test_hand_listed_daylight_saving_times(
    zone: str, expression: str, after: datetime, expected: list[datetime]
) -> None:
    schedule = spec(cron=expression, timezone=zone)
    assert times(schedule, after, len(expected)) == expected


def brute_force(
    zone: str, matches: Callable[[datetime], bool], start: datetime, end: datetime
) -> list[datetime]:
    """Walk UTC minute by minute; every local wall-clock minute slot that ``matches`` fires
    at the first UTC minute whose local wall time is at or past it (a slot in a gap fires
    right after the gap; a repeated slot fires at its first occurrence)."""
    tz = ZoneInfo(zone)
    fired: list[datetime] = []
    slot = start.astimezone(tz).replace(tzinfo=None)
    instant = start
    while instant < end:
        local = instant.astimezone(tz).replace(tzinfo=None)
        due = False
        while slot <= local:  # every slot the wall clock has reached since the last minute
            due = due or matches(slot)
            slot += timedelta(minutes=1)
        if due:
            fired.append(instant)
        instant += timedelta(minutes=1)
    return fired


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("Europe/Paris", utc(2026, 3, 28)),
        ("Europe/Paris", utc(2026, 10, 24)),
        ("America/New_York", utc(2026, 3, 7)),
        ("America/New_York", utc(2026, 10, 31)),
    ],
)
@pytest.mark.parametrize(
    ("expression", "matches"),
    [
        ("30 2 * * *", lambda t: t.hour == 2 and t.minute == 30),
        ("0 1 * * *", lambda t: t.hour == 1 and t.minute == 0),
        ("45 1,2,3 * * *", lambda t: t.hour in (1, 2, 3) and t.minute == 45),
        ("*/20 * * * *", lambda t: t.minute % 20 == 0),
    ],
)
def test_brute_force_oracle(
    zone: str, day: datetime, expression: str, matches: Callable[[datetime], bool]
) -> None:
    start, end = day, day + timedelta(days=3)
    # The walk starts at a minute boundary: slots before ``start`` are not its business.
    expected = brute_force(zone, matches, start + timedelta(minutes=1), end)
    schedule = spec(cron=expression, timezone=zone)
    got: list[datetime] = []
    for instant in cron.occurrences(schedule, start, ANCHOR):
        if instant >= end:
            break
        got.append(instant)
    assert got == expected
    assert len(expected) >= 2


def test_seconds_field_comes_first() -> None:
    schedule = spec(cron="*/20 * * * * *")
    assert times(schedule, utc(2026, 5, 1, 12, 0, 5), 3) == [
        utc(2026, 5, 1, 12, 0, 20),
        utc(2026, 5, 1, 12, 0, 40),
        utc(2026, 5, 1, 12, 1, 0),
    ]


def test_aliases() -> None:
    schedule = spec(cron="@hourly")
    assert times(schedule, utc(2026, 5, 1, 12, 10), 1) == [utc(2026, 5, 1, 13)]


def test_intervals_follow_elapsed_time_across_daylight_saving() -> None:
    anchor = utc(2026, 3, 28, 22, 10)
    schedule = spec(every="1h", timezone="Europe/Paris")
    found = cron.next_times(schedule, anchor, anchor, 6)
    assert found == [anchor + timedelta(hours=k) for k in range(1, 7)]
    # From any instant: the grid of the anchor, never the wall clock.
    assert cron.next_times(schedule, utc(2026, 3, 29, 1, 30), anchor, 1) == [
        utc(2026, 3, 29, 2, 10)
    ]
    assert cron.first_from(schedule, utc(2026, 3, 29, 2, 10), anchor) == utc(2026, 3, 29, 2, 10)


def test_jitter_is_stable_bounded_and_spread() -> None:
    schedule = spec(cron="* * * * *", jitter="30s")
    nominals = [utc(2026, 5, 1, 12, m) for m in range(60)]
    delays = [cron.jitter(schedule, "abc", n) for n in nominals]
    assert delays == [cron.jitter(schedule, "abc", n) for n in nominals]
    assert all(timedelta(0) <= d < timedelta(seconds=30) for d in delays)
    assert len(set(delays)) > 50
    assert cron.jitter(schedule, "other", nominals[0]) != delays[0]
    assert cron.jitter(spec(cron="* * * * *"), "abc", nominals[0]) == timedelta(0)


def test_counting_and_looking_back() -> None:
    schedule = spec(cron="*/10 * * * *")
    start, end = utc(2026, 5, 1), utc(2026, 5, 2)
    assert cron.count_between(schedule, start, end, ANCHOR, 10_000) == 144
    assert cron.count_between(schedule, start, end, ANCHOR, 100) == 100
    assert cron.last_before(schedule, end, start, ANCHOR) == utc(2026, 5, 1, 23, 50)
    assert cron.last_before(schedule, start, start, ANCHOR) is None
    every = spec(every="7m")
    assert cron.count_between(every, ANCHOR, ANCHOR + timedelta(minutes=70), ANCHOR, 999) == 9


def plan(schedule: ScheduleSpec, next_fire_at: datetime, now: datetime) -> list[tuple[str, str]]:
    found = plan_due(Due("s", schedule, ANCHOR, next_fire_at), now)
    return [(o.nominal.strftime("%H:%M"), o.action) for o in found.occurrences]


def test_catch_up_decisions() -> None:
    now = utc(2026, 5, 1, 14, 30)
    first = utc(2026, 5, 1, 10)
    hours = ["10:00", "11:00", "12:00", "13:00", "14:00"]
    skip = plan(spec(cron="0 * * * *"), first, now)
    assert skip == [(h, "missed") for h in hours]
    latest = plan(spec(cron="0 * * * *", catchup="latest"), first, now)
    assert latest == [(h, "missed") for h in hours[:4]] + [("14:00", "fire")]
    everything = plan(spec(cron="0 * * * *", catchup="all"), first, now)
    assert everything == [(h, "fire") for h in hours]
    # A timely occurrence wins over 'latest': the late ones are all missed.
    timely = plan(spec(cron="0 * * * *", catchup="latest"), first, utc(2026, 5, 1, 14, 0, 30))
    assert timely == [(h, "missed") for h in hours[:4]] + [("14:00", "fire")]
    assert plan_due(Due("s", spec(cron="0 * * * *"), ANCHOR, first), now).next_fire_at == utc(
        2026, 5, 1, 15
    )


def test_overlap_decisions() -> None:
    def decide(policy: str, running: bool, buffered: int = 0) -> str:
        return overlap(spec(cron="@hourly", overlap=policy), running, buffered)[0]

    assert decide("skip", False) == "start"
    assert decide("skip", True) == "skip"
    assert decide("allow", True) == "start"
    assert decide("buffer_one", True) == "buffer"
    assert decide("buffer_one", True, 1) == "skip"
    assert decide("buffer_all", True, 5) == "buffer"
    assert decide("buffer_all", False, 1) == "buffer"  # queues behind the buffered one
    assert decide("cancel_previous", True) == "cancel_and_start"
