"""Waiting for executions to finish: what a webhook's sync response waits on.

The finishing commit tells the waiter (``Store.wait_finished``, store/waits.py): a commit of
this process's embedded worker through ``Store.listeners``, one of a worker in another
process through its notification (PostgreSQL NOTIFY, or the SQLite ``<database>-finished``
file), with a read of the status now and then as a safety net. No polling loop here, so a
server without an embedded worker answers as soon as one elsewhere finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from conveyor.engine.state import TERMINAL
from conveyor.store import Store, triggers

TERMINAL_STATUSES = frozenset(s.value for s in TERMINAL)


async def finished_within(
    store: Store, execution_id: str, within: float, node: str | None = None
) -> dict[str, Any] | None:
    """The execution's status, result and error (and ``node``'s output) once it is
    finished, or None after ``within`` seconds."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await store.wait_finished(execution_id)
    row: dict[str, Any] = await store.read(triggers.finished, execution_id, node)
    return row if row["status"] in TERMINAL_STATUSES else None
