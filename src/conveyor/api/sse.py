"""Message ids of the Server-Sent Event streams: every message has its own, strictly
increasing, and a client that resumes after any of them gets exactly what followed it.

A stored event ``N`` becomes one or more messages: the first has id ``"N"``, the ones derived
from the same event ``"N.1"``, ``"N.2"``, ... (a failure is ``error`` ``"N"`` then
``complete`` ``"N.1"``). A snapshot sent after a batch ending with event ``N`` (``progress``,
``counts``) takes the next free index of ``N``, so it sorts after every message of ``N``
and before event ``N + 1``. Ids compare as (seq, index), never as strings or floats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.errors import InputError

MAX_SEQ = 2**62
MAX_ID_LENGTH = 40
_ID = re.compile(r"(0|[1-9][0-9]{0,18})(?:\.([1-9][0-9]{0,8}))?")


@dataclass(frozen=True, order=True)
class Position:
    """Where a message sits in a stream: the event it comes from, and its index there."""

    seq: int
    index: int = 0

    def __str__(self) -> str:
        return f"{self.seq}.{self.index}" if self.index else str(self.seq)


START = Position(0)


def parse(raw: str) -> Position:
    """A ``Last-Event-ID`` as this API wrote it (``"N"`` or ``"N.k"``), else InputError."""
    match = _ID.fullmatch(raw)
    if match is None:
        raise InputError(
            "Last-Event-ID must be an id this stream sent: an event number, optionally "
            "followed by '.' and a message index (e.g. 12 or 12.1)"
        )
    seq = int(match[1])
    if seq > MAX_SEQ:
        raise InputError("Last-Event-ID must be an event number from 0 to 2^62")
    return Position(seq, int(match[2] or 0))
