"""The live feed's frontier (``store.feed.settle``): events are delivered in id order, never
past a gap that a transaction still open could fill."""

from __future__ import annotations

import pytest

from conveyor.store.feed import settle


@pytest.mark.parametrize(
    ("frontier", "ids", "settled_upto", "complete", "expected"),
    [
        (10, [], 10, True, (0, 10)),  # nothing new
        (10, [11, 12, 13], 10, True, (3, 13)),  # contiguous: all of it at once
        (10, [11, 13], 10, True, (1, 11)),  # 12 may still come: stop before 13
        (10, [12, 13], 10, True, (0, 10)),  # 11 may still come: nothing yet
        (10, [12, 13], 11, True, (2, 13)),  # 11 will never come (its writers ended)
        (10, [11, 14], 12, True, (1, 12)),  # 12 settled, 13 not: deliver 11, frontier 12
        (10, [11, 12], 20, True, (2, 20)),  # all visible ids seen: past settled gaps too
        (10, [11, 12], 20, False, (2, 12)),  # a page cut short: only as far as it went
        (10, [15], 15, True, (1, 15)),  # SQLite: every visible id is settled
    ],
)
def test_delivery_stops_at_the_first_unsettled_gap(
    frontier: int,
    ids: list[int],
    settled_upto: int,
    complete: bool,
    expected: tuple[int, int],
) -> None:
    assert settle(frontier, ids, settled_upto, complete) == expected
