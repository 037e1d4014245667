"""The statistics page's time range: presets, a custom range typed in UTC (or with its own
offset), and a typed range that is not one falls back to the last 24 hours with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.web.pages.statistics import choose

NOW = datetime(2026, 12, 3, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("key", "span"),
    [("1h", timedelta(hours=1)), ("7d", timedelta(days=7)), (None, timedelta(hours=24))],
)
def test_a_preset_ends_now(key: str | None, span: timedelta) -> None:
    chosen = choose(NOW, key, "2020-01-01T00:00", None)
    assert (chosen.key, chosen.start, chosen.end, chosen.error) == (
        key or "24h",
        NOW - span,
        NOW,
        "",
    )


def test_an_unknown_preset_is_the_default() -> None:
    assert choose(NOW, "fortnight", None, None).key == "24h"


def test_a_custom_range_is_utc_unless_it_names_its_offset() -> None:
    chosen = choose(NOW, "custom", "2026-12-01T00:00+02:00", "2026-12-02T00:00")
    assert chosen.start == datetime(2026, 11, 30, 22, tzinfo=UTC)
    assert chosen.end == datetime(2026, 12, 2, tzinfo=UTC)
    assert (chosen.typed_from, chosen.error) == ("2026-12-01T00:00+02:00", "")
    assert choose(NOW, "custom", "", "").start == NOW - timedelta(hours=24)


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [
        ("yesterday", "", "is not a date and time"),
        ("2026-12-02T00:00", "2026-12-01T00:00", "'from' must be before 'to'"),
        ("2000-01-01T00:00", "2026-01-01T00:00", "at most 500 days"),
        ("", "0001-01-01T00:00", "out of bounds"),
        ("0001-01-01T00:00+05:00", "0001-01-02T00:00", "out of range once converted to UTC"),
    ],
)
def test_a_typed_range_that_is_not_one_keeps_the_text_and_says_why(
    start: str, end: str, reason: str
) -> None:
    chosen = choose(NOW, "custom", start, end)
    assert reason in chosen.error
    assert (chosen.key, chosen.typed_from, chosen.typed_to) == ("custom", start, end)
    assert (chosen.start, chosen.end) == (NOW - timedelta(hours=24), NOW)
