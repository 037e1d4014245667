"""Reading the events table for live feeds: new events in id order up to a *settled*
frontier, live counts per workspace, progress per execution, and the catch-up reads of a
stream that resumes from an older position.

A frontier ``F`` is settled when every event with an id up to ``F`` is either visible or
will never exist. On SQLite that is every visible id (commits are serialized). On
PostgreSQL a missing id below a visible one may belong to a transaction that has not
committed yet, or to one that rolled back: :func:`settle` stops at such a gap until a
:class:`Barrier` says whether the transactions that could fill it are gone. Why that and
not something else is in ``conveyor.live``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Result, func, select

from conveyor.store.database import StoreDialect
from conveyor.store.tables import events, executions

LIVE = ("queued", "running", "waiting")
PROGRESS = (
    executions.c.id,
    executions.c.status,
    executions.c.steps_total,
    executions.c.steps_succeeded,
    executions.c.steps_failed,
    executions.c.steps_skipped,
    executions.c.steps_running,
)


@dataclass(frozen=True)
class Barrier:
    """Ids up to ``upto`` still missing are gaps for good once ``writers`` (the
    transactions that could still commit them, seen after the read that found them) have
    all ended."""

    upto: int
    writers: frozenset[str]


@dataclass
class Batch:
    """One read of the feed. ``rows`` are the events after ``base`` up to ``frontier``, in
    id order, none missing that could still come. ``base`` None: the frontier is not known
    yet (the first reads after a start)."""

    base: int | None
    frontier: int | None
    barrier: Barrier | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False  # a full page: there may be more to read at once
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)


def settle(frontier: int, ids: list[int], settled_upto: int, complete: bool) -> tuple[int, int]:
    """How many of ``ids`` (visible ids above ``frontier``, ascending) can be delivered,
    and the new frontier. A gap ends the delivery unless it lies within ``settled_upto``
    (known to stay empty). ``complete``: ``ids`` are all the visible ids, so the frontier
    may also move past settled gaps after the last of them."""
    expected = frontier + 1
    for count, ident in enumerate(ids):
        if ident > expected and ident - 1 > settled_upto:
            return count, max(expected - 1, settled_upto)
        expected = ident + 1
    end = expected - 1
    return len(ids), max(end, settled_upto) if complete else end


def read(
    conn: Connection,
    dialect: StoreDialect,
    frontier: int | None,
    barrier: Barrier | None,
    workspaces: Collection[str],
    watched: Collection[str],
    page: int = 1000,
) -> Batch:
    """The next batch after ``frontier``, with counts of the ``workspaces`` and progress
    of the ``watched`` executions that have events in it. Statement order matters on
    PostgreSQL: a barrier is checked before the rows are read (so the read sees whatever
    its writers committed), and writers are listed after (so none that could hold a gap
    the read found is missed)."""
    passed = barrier is not None and not dialect.writers_running(conn, barrier.writers)
    if frontier is None:
        if barrier is None:
            latest = int(conn.execute(select(func.max(events.c.id))).scalar() or 0)
            if not dialect.ids_commit_in_order:
                return Batch(None, None, Barrier(latest, dialect.event_writers(conn)))
            frontier, settled_upto = latest, latest
        elif not passed:
            return Batch(None, None, barrier)
        else:
            frontier, settled_upto = barrier.upto, barrier.upto
        barrier = None
    elif passed and barrier is not None:
        settled_upto, barrier = max(frontier, barrier.upto), None
    else:
        settled_upto = frontier
    rows = _dicts(
        conn.execute(select(events).where(events.c.id > frontier).order_by(events.c.id).limit(page))
    )
    ids = [r["id"] for r in rows]
    if dialect.ids_commit_in_order and ids:
        settled_upto = max(settled_upto, ids[-1])
    count, after = settle(frontier, ids, settled_upto, complete=len(rows) < page)
    if count < len(rows) and barrier is None:
        barrier = Barrier(ids[-1], dialect.event_writers(conn))
    batch = Batch(frontier, after, barrier, rows[:count], more=len(rows) == page)
    if batch.rows:
        wanted = set(workspaces)
        batch.counts = counts(conn, {r["workspace_id"] for r in batch.rows} & wanted)
        batch.progress = progress(conn, {r["execution_id"] for r in batch.rows} & set(watched))
    return batch


def _dicts(result: Result[Any]) -> list[dict[str, Any]]:
    """Rows as dicts: zipped with the keys, a third of the cost of ``mappings()``."""
    keys = list(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


def counts(conn: Connection, workspaces: Collection[str]) -> dict[str, dict[str, int]]:
    """Executions queued, running and waiting in each of ``workspaces``."""
    if not workspaces:
        return {}
    found = {w: dict.fromkeys(LIVE, 0) for w in workspaces}
    for workspace, status, n in conn.execute(
        select(executions.c.workspace_id, executions.c.status, func.count())
        .where(executions.c.workspace_id.in_(sorted(workspaces)), executions.c.status.in_(LIVE))
        .group_by(executions.c.workspace_id, executions.c.status)
    ):
        found[str(workspace)][str(status)] = int(n)
    return found


def progress(conn: Connection, execution_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    """Status and step counters of each of ``execution_ids``."""
    if not execution_ids:
        return {}
    rows = conn.execute(select(*PROGRESS).where(executions.c.id.in_(sorted(execution_ids))))
    return {str(r["id"]): dict(r) for r in rows.mappings()}


def workspace_events(
    conn: Connection, workspace_id: str, after_id: int, upto_id: int, limit: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """A workspace's events with ids in (``after_id``, ``upto_id``], at most ``limit``,
    and its live counts (one transaction: the counts go with the events)."""
    rows = conn.execute(
        select(events)
        .where(
            events.c.workspace_id == workspace_id,
            events.c.id > after_id,
            events.c.id <= upto_id,
        )
        .order_by(events.c.id)
        .limit(limit)
    )
    return _dicts(rows), counts(conn, [workspace_id])[workspace_id]


def execution_events(
    conn: Connection, execution_id: str, after_seq: int, upto_id: int, limit: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """An execution's events after ``after_seq`` with ids up to ``upto_id``, at most
    ``limit``, and its progress (one transaction)."""
    rows = conn.execute(
        select(events)
        .where(
            events.c.execution_id == execution_id,
            events.c.seq > after_seq,
            events.c.id <= upto_id,
        )
        .order_by(events.c.seq)
        .limit(limit)
    )
    return _dicts(rows), progress(conn, [execution_id]).get(execution_id, {})
