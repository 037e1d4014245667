"""Stream message ids: parsing what the API wrote, and their order; messages' data."""

from __future__ import annotations

import json

import pytest

from conveyor.api import sse
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


def test_odd_live_data_is_sent_as_text_never_an_error_that_ends_the_stream() -> None:
    """A node's live message is handed over unserialised (ctx.emit): an integer key, an
    integer past 64 bits or a lone surrogate must not break the stream of its viewers."""
    raw = sse.live_message("text", {1: "one", "big": 2**70, "bad": "\udcff"})
    head, data, end = raw.split(b"\n", 2)
    assert head == b"event: text" and end == b"\n"
    assert json.loads(data.removeprefix(b"data: ")) == {
        "1": "one",
        "big": str(2**70),
        "bad": "\\udcff",
    }
    assert json.loads(sse.message("step", 7, {"n": 2**70}).split(b"\n")[1][6:]) == {"n": str(2**70)}
