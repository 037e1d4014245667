"""Hostile schedules (pure): random cron expressions built from valid and broken fields
(out-of-range values, zero steps, dates that never come, 4 to 7 fields, @reboot), in zones
with unusual daylight saving (30-minute shifts, a skipped day, changes at midnight) and
names that are no zone, evaluated right around their transitions. A schedule is refused with
a validation error and nothing else, or it yields strictly increasing instants after the
start, promptly; one refused as never firing indeed has no occurrence, and one accepted has.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from conveyor.engine.triggers import ScheduleSpec, schedule_problems
from conveyor.engine.validation import check
from conveyor.nodes.builtin import build_registry
from conveyor.triggers import cron

ANCHOR = datetime(2011, 1, 1, tzinfo=UTC)
ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",  # shifts by 30 minutes
    "Pacific/Apia",  # skipped 30 December 2011 entirely
    "America/Sao_Paulo",  # changed at midnight (2018: 4 November 00:00 did not exist)
    "Asia/Tehran",
    "Mars/Olympus",
    "localtime",
    "",
    "UTC\n",
    "../../etc/passwd",
]
# Instants right around transitions of those zones.
AROUND = [
    datetime(2011, 12, 29, 10, tzinfo=UTC),
    datetime(2018, 11, 4, 2, 30, tzinfo=UTC),
    datetime(2026, 3, 29, 0, 59, tzinfo=UTC),
    datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
    datetime(2026, 4, 4, 14, 45, tzinfo=UTC),
    datetime(2026, 11, 1, 5, 59, tzinfo=UTC),
    datetime(9999, 12, 31, 23, tzinfo=UTC),
]
FIELD = st.one_of(
    st.sampled_from(["*", "?", "L", "0", "1", "2", "29", "30", "31", "59", "60", "61", "-1"]),
    st.sampled_from(["*/0", "*/15", "1-5", "5-1", "1-31/400", "1,15,30", "jan", "mon", "xyz"]),
    st.sampled_from(["2", "4,6,9,11", "feb", "0-6", "7", "8", "99999999999999999999"]),
)
WHOLE = st.sampled_from(
    [
        *("0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *", "0 0 29 2 *", "0 0 29 2 1"),
        *("@reboot", "@hourly", "@yearly", "@every 5m", "", " ", "* * * * *", "* * * * * * *"),
        *("30 2 * * *", "* 2 * * *", "0 0 * * *", "*/30 * * * * *", "0 0 L 2 *"),
    ]
)
SLOW = 2.0  # seconds for one example; only a busy loop gets near it (measured: ms)


@st.composite
def expressions(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(WHOLE)
    return " ".join(draw(st.lists(FIELD, min_size=4, max_size=7)))


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(expression=expressions(), zone=st.sampled_from(ZONES), after=st.sampled_from(AROUND))
def test_a_schedule_is_refused_cleanly_or_fires_in_order(
    expression: str, zone: str, after: datetime
) -> None:
    began = time.monotonic()
    try:
        spec = ScheduleSpec.model_validate({"id": "s", "cron": expression, "timezone": zone})
    except ValidationError:
        return
    problems = dict(schedule_problems(spec))
    found = cron.next_times(spec, after, ANCHOR, 5)
    assert found == sorted(set(found)), found
    assert all(t.tzinfo is not None and t > after for t in found), found
    ever = cron.first_from(spec, ANCHOR, ANCHOR)
    if "cron" in problems:
        assert ever is None and found == [], (expression, found)
    else:
        assert ever is not None, (expression, zone)
        # Five in a row unless the year 9999 ends first.
        assert len(found) == 5 or after.year == 9999, (expression, zone, after, found)
    took = time.monotonic() - began
    assert took < SLOW, (expression, zone, after, took)


@pytest.mark.parametrize(
    ("field", "value", "refused"),
    [
        ("cron", "0 0 30 2 *", "never fires"),
        ("cron", "0 0 31 2,4,6,9,11 *", "never fires"),
        ("timezone", "localtime", "server's own zone"),
    ],
)
def test_a_definition_with_a_useless_schedule_is_refused(
    field: str, value: str, refused: str
) -> None:
    schedule = {"type": "schedule", "id": "nightly", "cron": "0 3 * * *", field: value}
    definition = {
        "name": "scheduled",
        "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
        "triggers": [schedule],
    }
    accepted, problems = check(definition, build_registry())
    assert accepted is None
    assert [p.path for p in problems] == [f"triggers.0.{field}"], problems
    assert refused in problems[0].message


def test_a_stored_never_firing_schedule_still_reads_and_never_fires() -> None:
    """Saved before the check existed: the model still reads it (the scheduler re-reads
    every stored spec), and it simply has no next time."""
    spec = ScheduleSpec.model_validate({"id": "s", "cron": "0 0 30 2 *"})
    assert cron.first_from(spec, ANCHOR, ANCHOR) is None
    assert cron.last_before(spec, ANCHOR + timedelta(days=3650), ANCHOR, ANCHOR) is None


@pytest.mark.parametrize(
    ("expression", "zone"),
    [
        ("0 0 * * *", "Pacific/Kiritimati"),  # 9999-12-31 23:00 UTC is already 10000 there
        ("0 0 1 * *", "UTC"),  # croniter's month arithmetic raises ValueError past 9999
        ("0 0 L 2 *", "America/New_York"),
    ],
)
def test_the_end_of_time_ends_the_occurrences_quietly(expression: str, zone: str) -> None:
    spec = ScheduleSpec.model_validate({"id": "s", "cron": expression, "timezone": zone})
    end = datetime(9999, 12, 31, 23, tzinfo=UTC)
    assert cron.next_times(spec, end, ANCHOR, 3) == []
    assert cron.first_from(spec, end, ANCHOR) is None
