"""Failpoints: named places in the engine, worker, scheduler and API where a test makes the
process exit, raise, or park until released (issue 13's crash suites).

They are armed only by the test setting ``CONVEYOR_TEST_FAILPOINTS`` (read at the edges, in
``conveyor worker`` and ``conveyor server``, which log a warning when any is armed). Unarmed,
a failpoint is one check of an empty dict.

A spec is ``;``-separated ``point[:key]=action[@n]``:

- ``point`` is one of ``POINTS``; ``key`` narrows it (a node id for step points, else any
  string the caller passes), so ``step.after_effect:b=exit`` fires only for node ``b``;
- ``action`` is ``exit`` (``os._exit(137)``, as a SIGKILL would end it, without cleanup),
  ``raise`` (``FailpointError``), or ``park:<path>`` (create ``<path>.parked`` and block until
  ``<path>`` exists; the async form awaits, so the rest of the process keeps running, the
  sync form blocks its thread);
- ``@n`` fires on the n-th hit only (default: every hit).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ConveyorError

log = logging.getLogger(__name__)

POINTS = frozenset(
    {
        "claim.before",  # a worker is about to claim
        "claim.after",  # claimed (leases committed), nothing run yet
        "step.before_start",  # the step's start is committed; the node has not run
        "step.after_effect",  # the node returned (its side effect happened), not committed
        "commit.before",  # a transition is about to be committed
        "commit.after",  # a transition is committed, the runner has not gone on
        "final.before",  # the execution's final write is about to be made
        "lease.renew",  # the worker is about to renew its leases
        "schedule.before_fire",  # a due schedule is about to be handled
        "schedule.after_fire",  # a schedule's occurrence is committed
        "webhook.after_commit",  # a delivery is committed, its answer not sent
        "execute.after_commit",  # an API execute is committed, its answer not sent
    }
)
EXIT_CODE = 137
_PARK_POLL = 0.01


class FailpointError(ConveyorError):
    """Raised by a failpoint armed with ``raise``."""


@dataclass
class _Armed:
    action: str  # exit | raise | park
    path: Path | None = None
    nth: int | None = None
    hits: int = 0


_ARMED: dict[str, _Armed] = {}


def arm(spec: str) -> list[str]:
    """Arm the failpoints of ``spec`` (replacing any armed before); returns their names."""
    armed: dict[str, _Armed] = {}
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        name, _, action = item.partition("=")
        point = name.split(":", 1)[0]
        if point not in POINTS:
            raise ValueError(f"unknown failpoint {point!r}; known: {', '.join(sorted(POINTS))}")
        action, _, nth = action.partition("@")
        kind, _, path = action.partition(":")
        if kind not in ("exit", "raise", "park") or (kind == "park") != bool(path):
            raise ValueError(f"failpoint {name}: action must be exit, raise or park:<path>")
        armed[name] = _Armed(kind, Path(path) if path else None, int(nth) if nth else None)
    _ARMED.clear()
    _ARMED.update(armed)
    return sorted(armed)


def disarm() -> None:
    _ARMED.clear()


def _due(point: str, key: str | None) -> _Armed | None:
    armed = _ARMED.get(f"{point}:{key}") if key is not None else None
    armed = armed or _ARMED.get(point)
    if armed is None:
        return None
    armed.hits += 1
    if armed.nth is not None and armed.hits != armed.nth:
        return None
    log.warning("failpoint %s fires: %s", point, armed.action, extra={"action": "failpoint"})
    if armed.action == "exit":
        os._exit(EXIT_CODE)
    if armed.action == "raise":
        raise FailpointError(f"failpoint {point} fired")
    assert armed.path is not None
    Path(f"{armed.path}.parked").touch()
    return armed


def hit(point: str, key: str | None = None) -> None:
    """A failpoint in synchronous code (a database thread): parking blocks the thread."""
    if not _ARMED:
        return
    armed = _due(point, key)
    while armed is not None and armed.path is not None and not armed.path.exists():
        time.sleep(_PARK_POLL)


async def reached(point: str, key: str | None = None) -> None:
    """A failpoint in async code: parking awaits, so heartbeats and other executions go on."""
    if not _ARMED:
        return
    armed = _due(point, key)
    # The release is a file another process creates: nothing in this process to await.
    while armed is not None and armed.path is not None and not armed.path.exists():  # noqa: ASYNC110
        await asyncio.sleep(_PARK_POLL)
