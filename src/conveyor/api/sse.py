"""Server-Sent Events: message ids, the wire format, and the response that streams them.

Every message has its own id, strictly increasing, and a client that resumes after any of
them gets exactly what followed it.

A stored event ``N`` becomes one or more messages: the first has id ``"N"``, the ones derived
from the same event ``"N.1"``, ``"N.2"``, ... (a failure is ``error`` ``"N"`` then
``complete`` ``"N.1"``). A snapshot sent after a batch ending with event ``N`` (``progress``,
``counts``) takes the next free index of ``N``, so it sorts after every message of ``N``
and before event ``N + 1``. Ids compare as (seq, index), never as strings or floats.

Streams are served by :class:`EventStream`, not by FastAPI's generator endpoints: those
wrap the generator in a keep-alive task that raises ``BrokenResourceError`` (logged as an
error with a traceback) when a client disconnects while messages are under way. Here the
stream's own generator sends the keep-alive (:data:`PING`) when it has waited that long
for something to send, so a disconnect simply cancels the one task that runs it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi.sse import KEEPALIVE_COMMENT
from starlette.responses import StreamingResponse

from conveyor.errors import InputError
from conveyor.store.tables import json_bytes

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


PING = KEEPALIVE_COMMENT  # a comment line: keeps proxies from closing an idle stream
PING_SECONDS = 15.0


def message(event: str, ident: Position | int, data: Any) -> bytes:
    """One message on the wire: data as compact JSON on one line (orjson escapes every
    line break), as ``format_sse_event`` lays it out; event names are this code's own.
    Data is encoded as stored data is (``store.tables.json_bytes``): a value the encoder
    refuses (a live message's integer past 64 bits, a lone surrogate) becomes text, never
    an error that would end the stream."""
    return b"event: %s\ndata: %s\nid: %s\n\n" % (
        event.encode(),
        json_bytes(data),
        str(ident).encode(),
    )


def live_message(event: str, data: Any) -> bytes:
    """A live-only message (progress, streamed text): no ``id``, so a client's
    Last-Event-ID stays on the last stored event and a reconnect resumes from there."""
    return b"event: %s\ndata: %s\n\n" % (event.encode(), json_bytes(data))


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response of already encoded messages."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], status_code: int = 200) -> None:
        # Not cached, and not buffered by nginx-like proxies.
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(content, status_code=status_code, headers=headers)


# How the streams are documented in OpenAPI (3.2's itemSchema, as FastAPI writes it).
DOCUMENTED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events",
        "content": {
            "text/event-stream": {
                "itemSchema": {
                    "type": "object",
                    "properties": {
                        "data": {"type": "string"},
                        "event": {"type": "string"},
                        "id": {"type": "string"},
                        "retry": {"type": "integer", "minimum": 0},
                    },
                }
            }
        },
    }
}
