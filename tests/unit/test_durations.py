"""Unit tests for parsing durations written by people."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from conveyor.durations import Duration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1m30s250ms", timedelta(minutes=1, seconds=30, milliseconds=250)),
        ("1.5s", timedelta(seconds=1.5)),
        (" 1h 30m ", timedelta(hours=1, minutes=30)),
        ("0s", timedelta(0)),
    ],
)
def test_parses_duration_strings(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, timedelta(0)),
        (5, timedelta(seconds=5)),
        (0.25, timedelta(milliseconds=250)),
        (timedelta(minutes=2), timedelta(minutes=2)),
    ],
)
def test_numbers_are_seconds_and_timedeltas_pass_through(value: Any, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value",
    ["abc", "", "   ", "30", "30x", "s", "1h30", "5 minutes", "1.2.3s", "5mss", None, [1], {}],
)
def test_rejects_values_that_are_not_durations(value: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [-1, -0.5, timedelta(seconds=-1)])
def test_rejects_negative_durations(value: Any) -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(value)


def test_rejects_negative_duration_strings() -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("-5s")


@pytest.mark.parametrize("value", [True, False])
def test_rejects_booleans_although_they_are_ints(value: bool) -> None:
    with pytest.raises(ValueError, match="number of seconds"):
        parse_duration(value)


def test_error_message_names_the_bad_text() -> None:
    with pytest.raises(ValueError, match="'abc' is not a duration"):
        parse_duration("abc")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(0), "0ms"),
        (timedelta(seconds=30), "30s"),
        (timedelta(minutes=1, seconds=30), "90s"),
        (timedelta(seconds=1.5), "1.5s"),
    ],
)
def test_format_duration(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


class _Model(BaseModel):
    timeout: Duration


def test_duration_field_in_a_model_parses_and_serializes() -> None:
    model = _Model.model_validate({"timeout": "1h30m"})
    assert model.timeout == timedelta(hours=1, minutes=30)
    assert model.model_dump() == {"timeout": "5400s"}


def test_duration_field_in_a_model_reports_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="'soon' is not a duration"):
        _Model.model_validate({"timeout": "soon"})
