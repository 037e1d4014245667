"""Subscribers: callbacks a Store runs after commits, each on the event loop it came from.

The server runs its embedded worker on an event loop of its own (a thread), so a commit made
by one loop may concern subscribers of another: those are handed over thread-safely, in
order, instead of being called on the wrong thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

P = TypeVar("P")


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Subscribers(Generic[P]):
    """A list of callbacks (``append``/``remove`` as on a list) that ``__call__`` runs."""

    def __init__(self) -> None:
        self._items: list[tuple[Callable[[P], None], asyncio.AbstractEventLoop | None]] = []

    def append(self, callback: Callable[[P], None]) -> None:
        self._items.append((callback, _current_loop()))

    def remove(self, callback: Callable[[P], None]) -> None:
        for index, (known, _loop) in enumerate(self._items):
            if known == callback:
                del self._items[index]
                return
        raise ValueError("not subscribed")

    def __contains__(self, callback: object) -> bool:
        return any(known == callback for known, _loop in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __call__(self, payload: P) -> None:
        current = _current_loop()
        for callback, loop in list(self._items):
            if loop is None or loop is current:
                callback(payload)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(callback, payload)
