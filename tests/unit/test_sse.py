"""Stream message ids: parsing what the API wrote, and their order."""

from __future__ import annotations

import pytest

from conveyor.api.sse import MAX_SEQ, Position, parse
from conveyor.errors import InputError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", Position(0)), ("7", Position(7)), ("7.1", Position(7, 1)), ("12.10", Position(12, 10))],
)
def test_parses_the_ids_streams_send(raw: str, expected: Position) -> None:
    assert parse(raw) == expected
    assert str(parse(raw)) == raw


@pytest.mark.parametrize(
    "raw", ["", "-1", "1.", ".1", "1.0", "01", "1.2.3", "1e3", " 1", "1 ", "x", str(MAX_SEQ + 1)]
)
def test_refuses_anything_else(raw: str) -> None:
    with pytest.raises(InputError):
        parse(raw)


def test_derived_messages_sort_between_their_event_and_the_next() -> None:
    assert Position(9) < Position(9, 1) < Position(9, 2) < Position(10) < Position(10, 1)
    assert Position(9, 10) > Position(9, 9)  # numbers, not strings
