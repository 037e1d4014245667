"""Live-only messages about a running step (progress, streamed text): what they carry and
how they cross processes (a PostgreSQL NOTIFY payload). They are never stored."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_MAX_PAYLOAD = 7000  # NOTIFY takes under 8000 bytes


@dataclass(frozen=True)
class LiveMessage:
    execution_id: str
    kind: str  # step.progress, step.delta
    data: dict[str, Any]

    def encode(self, origin: str) -> str | None:
        """The NOTIFY payload; a text delta too long for one is cut (the step's durable
        output holds the whole text), anything else too long is not sent."""
        body = {"o": origin, "e": self.execution_id, "k": self.kind, "d": self.data}
        payload = json.dumps(body, separators=(",", ":"), default=str)
        if len(payload.encode()) <= _MAX_PAYLOAD:
            return payload
        text = self.data.get("text")
        if isinstance(text, str):
            room = _MAX_PAYLOAD - (len(payload.encode()) - len(text.encode())) - 16
            if room > 0:
                cut = {**self.data, "text": text.encode()[:room].decode("utf-8", "ignore")}
                return LiveMessage(self.execution_id, self.kind, cut).encode(origin)
        return None

    @classmethod
    def decode(cls, payload: str) -> tuple[str, LiveMessage] | None:
        """``(origin, message)`` from a payload; None for one that is not a message."""
        try:
            body = json.loads(payload)
            return body["o"], cls(body["e"], body["k"], body["d"])
        except (ValueError, KeyError, TypeError):
            return None
