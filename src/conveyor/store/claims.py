"""Claiming executions under leases: claim (with flow control), load what the runner needs to
resume, heartbeats, release, and the control state workers poll (sync, on a Connection)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Float, and_, bindparam, case, func, or_, select, update

from conveyor.engine.interfaces import ClaimedExecution, Lease, Signal, StepRecord
from conveyor.engine.state import ExecutionStatus, StepStatus
from conveyor.store import accounts, flow
from conveyor.store.database import StoreDialect
from conveyor.store.tables import (
    UTCDateTime,
    executions,
    signals,
    steps,
    workflow_versions,
    workflows,
)

_CANDIDATE = (
    executions.c.id,
    executions.c.retry_of,
    executions.c.status,
    executions.c.workflow_id,
    executions.c.started_at,
    executions.c.concurrency_key,
    executions.c.key_limit,
    executions.c.workflow_limit,
    executions.c.rate_limit,
    executions.c.rate_period_seconds,
    executions.c.workspace_id,
    executions.c.created_by,
    executions.c.user_limit,
)


def _running_user_count() -> Any:
    """Running executions of the candidate's user in its workspace (a correlated count)."""
    other = executions.alias("other")
    c = executions.c
    return (
        select(func.count())
        .where(
            other.c.workspace_id == c.workspace_id,
            other.c.created_by == c.created_by,
            other.c.status == "running",
        )
        .scalar_subquery()
    )


def _running_count(column: Any) -> Any:
    """Running executions sharing ``column`` with the candidate row (a correlated count)."""
    other = executions.alias("other")
    return (
        select(func.count())
        .where(getattr(other.c, column.name) == column, other.c.status == "running")
        .scalar_subquery()
    )


def _candidates(dialect: StoreDialect, one: bool) -> Any:
    """Ready: queued or waiting and due (by the worker's clock), not paused, or running with a
    lease the database clock says has expired (a recovery). Priority first, then age.
    Concurrency limits are pre-filtered here and checked exactly by ``flow.admit``."""
    c = executions.c
    due = and_(
        c.status.in_(["queued", "waiting"]), c.available_at <= bindparam("now", type_=UTCDateTime())
    )
    expired = and_(c.status == "running", c.lease_expires_at < dialect.now())
    query = (
        select(*_CANDIDATE)
        .where(or_(due, expired), c.paused.is_(False))
        .where(
            or_(
                c.key_limit.is_(None),
                c.status == "running",  # a recovery keeps the slot it holds
                _running_count(c.concurrency_key) < c.key_limit,
            )
        )
        .where(
            or_(
                c.workflow_limit.is_(None),
                c.status == "running",
                _running_count(c.workflow_id) < c.workflow_limit,
            )
        )
        .where(
            or_(c.user_limit.is_(None), c.status == "running", _running_user_count() < c.user_limit)
        )
        .order_by(c.priority.desc(), c.available_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=executions)
    )
    return query.where(c.id == bindparam("execution_id")) if one else query


def _take(dialect: StoreDialect) -> Any:
    """Put the chosen executions under the new lease and return what the runner needs."""
    c = executions.c
    return (
        update(executions)
        .where(c.id.in_(bindparam("ids", expanding=True)))
        .values(
            status="running",
            lease_owner=bindparam("owner"),
            lease_number=c.lease_number + 1,
            lease_expires_at=dialect.now_plus_seconds(bindparam("lease_seconds", type_=Float())),
            recoveries=c.recoveries + case((c.status == "running", 1), else_=0),
            started_at=func.coalesce(c.started_at, bindparam("now", type_=UTCDateTime())),
            wait_reason=None,
        )
        .returning(*_CLAIMED)
    )


_CLAIMED = (
    executions.c.id,
    executions.c.workspace_id,
    executions.c.workflow_id,
    executions.c.version_id,
    executions.c.input,
    executions.c.status,
    executions.c.trigger_type,
    executions.c.lease_number,
    executions.c.created_at,
    executions.c.started_at,
    executions.c.deadline_at,
    executions.c.cancel_requested,
    executions.c.recoveries,
    executions.c.paused,
    executions.c.created_by,
)
_BUILT: dict[tuple[str, str], Any] = {}


def _built(dialect: StoreDialect, name: str) -> Any:
    key = (dialect.name, name)
    if key not in _BUILT:
        builders = {
            "many": lambda: _candidates(dialect, False),
            "one": lambda: _candidates(dialect, True),
            "take": lambda: _take(dialect),
        }
        _BUILT[key] = builders[name]()
    return _BUILT[key]


def claim(
    conn: Connection,
    dialect: StoreDialect,
    *,
    owner: str,
    lease_seconds: float,
    limit: int,
    now: datetime,
    execution_id: str | None = None,
) -> list[ClaimedExecution]:
    """Take up to ``limit`` ready executions (or the one given) under a new lease each.

    Concurrency limits are then checked exactly under per-key locks (see
    :func:`conveyor.store.flow.admit`), so they hold across processes."""
    params: dict[str, Any] = {"now": now, "limit": limit}
    if execution_id is not None:
        params["execution_id"] = execution_id
    query = _built(dialect, "many" if execution_id is None else "one")
    candidates = conn.execute(query, params).mappings().all()
    chosen = flow.admit(conn, dialect, [dict(c) for c in candidates], now)
    if not chosen:
        return []
    rows = conn.execute(
        _built(dialect, "take"),
        {
            "ids": [c["id"] for c in chosen],
            "owner": owner,
            "lease_seconds": lease_seconds,
            "now": now,
        },
    ).all()
    before = {c["id"]: c for c in chosen}
    claimed = _load(conn, rows, owner, before)
    for execution in claimed:
        execution.lease_seconds = lease_seconds
    return claimed


def peek(conn: Connection, dialect: StoreDialect, now: datetime) -> tuple[bool, datetime | None]:
    """Without locking anything: is an execution ready, and if not, when is the next due?"""
    ready = conn.execute(_built(dialect, "many"), {"now": now, "limit": 1}).first() is not None
    return ready, None if ready else next_due(conn)


_STEP_STATE = (
    steps.c.execution_id,
    steps.c.node_id,
    steps.c.attempt,
    steps.c.status,
    steps.c.output,
    steps.c.error,
    steps.c.branch,
    steps.c.continued,
    steps.c.started_at,
    steps.c.finished_at,
    steps.c.wait_until,
    steps.c.wait_signal,
    steps.c.step_index,
)
# Versions never change once written: their definitions are read once per process.
_DEFINITIONS: dict[str, tuple[dict[str, Any], int, str]] = {}
_DEFINITIONS_KEPT = 1000


def _load(
    conn: Connection, rows: Any, owner: str, before: dict[str, dict[str, Any]]
) -> list[ClaimedExecution]:
    """The pinned definition, the latest attempt of every node, and the signals not yet
    consumed. ``before``: the claimed rows as they were before this claim, which tell a
    first claim (no step can exist yet, unless seeded by a retry) and a recovery."""
    ids = [r.id for r in rows]
    first = {i for i, b in before.items() if b["started_at"] is None}
    fresh = {i for i in first if before[i]["retry_of"] is None}
    definitions = _definitions(conn, {r.version_id for r in rows})
    latest: dict[str, dict[str, StepRecord]] = {i: {} for i in ids}
    resumed = [i for i in ids if i not in fresh]
    if resumed:
        for s in conn.execute(
            select(*_STEP_STATE).where(steps.c.execution_id.in_(resumed)).order_by(steps.c.attempt)
        ).mappings():
            latest[s["execution_id"]][s["node_id"]] = StepRecord(
                node_id=s["node_id"],
                attempt=s["attempt"],
                status=StepStatus(s["status"]),
                output=s["output"],
                error=s["error"],
                branch=s["branch"],
                continued=s["continued"],
                started_at=s["started_at"],
                finished_at=s["finished_at"],
                wait_until=s["wait_until"],
                wait_signal=s["wait_signal"],
                index=s["step_index"],
            )
    pending: dict[str, list[Signal]] = {i: [] for i in ids}
    for g in conn.execute(
        select(signals.c.id, signals.c.execution_id, signals.c.name, signals.c.data)
        .where(signals.c.execution_id.in_(ids), signals.c.consumed_by.is_(None))
        .order_by(signals.c.id)
    ):
        pending[g.execution_id].append(Signal(g.id, g.name, g.data))
    starters = accounts.execution_users(
        conn, {r.created_by for r in rows if r.created_by is not None}
    )
    claimed = []
    for r in rows:
        definition, version, workflow_name = definitions[r.version_id]
        claimed.append(
            ClaimedExecution(
                id=r.id,
                workspace_id=r.workspace_id,
                workflow_id=r.workflow_id,
                workflow_name=workflow_name,
                version=version,
                definition=definition,
                input=r.input,
                status=ExecutionStatus(r.status),
                trigger_type=r.trigger_type,
                lease=Lease(owner, r.lease_number),
                created_at=r.created_at,
                started_at=r.started_at,
                deadline_at=r.deadline_at,
                cancel_requested=r.cancel_requested,
                recoveries=r.recoveries,
                steps=latest[r.id],
                first_claim=r.id in first,
                recovered=r.id in before and before[r.id]["status"] == "running",
                signals=pending[r.id],
                paused=r.paused,
                user=starters.get(r.created_by) if r.created_by is not None else None,
            )
        )
    return claimed


def _definitions(
    conn: Connection, version_ids: set[str]
) -> dict[str, tuple[dict[str, Any], int, str]]:
    missing = [v for v in version_ids if v not in _DEFINITIONS]
    if missing:
        if len(_DEFINITIONS) + len(missing) > _DEFINITIONS_KEPT:
            _DEFINITIONS.clear()
        for v in conn.execute(
            select(
                workflow_versions.c.id,
                workflow_versions.c.definition,
                workflow_versions.c.version,
                workflows.c.name,
            )
            .join(workflows, workflows.c.id == workflow_versions.c.workflow_id)
            .where(workflow_versions.c.id.in_(missing))
        ):
            _DEFINITIONS[v.id] = (v.definition, v.version, v.name)
    return {v: _DEFINITIONS[v] for v in version_ids}


def heartbeat(
    conn: Connection, dialect: StoreDialect, owner: str, lease_seconds: float
) -> list[tuple[str, bool]]:
    """Renew every lease ``owner`` holds in one statement; return (id, cancel_requested)."""
    rows = conn.execute(
        update(executions)
        .where(executions.c.lease_owner == owner, executions.c.status == "running")
        .values(lease_expires_at=dialect.now_plus(lease_seconds))
        .returning(executions.c.id, executions.c.cancel_requested)
    ).all()
    return [(r.id, r.cancel_requested) for r in rows]


def release(conn: Connection, execution: ClaimedExecution) -> bool:
    """Give an execution back to the queue at once (graceful shutdown)."""
    result = conn.execute(
        update(executions)
        .where(
            executions.c.id == execution.id,
            executions.c.lease_owner == execution.lease.owner,
            executions.c.lease_number == execution.lease.number,
            executions.c.status == "running",
        )
        .values(lease_owner=None, lease_expires_at=None, status="queued")
    )
    return result.rowcount == 1


def control_state(conn: Connection, owner: str) -> list[tuple[str, bool, bool, int | None]]:
    """For each execution ``owner`` runs: (id, cancel requested, paused, newest pending
    signal id). One cheap read that lets a worker notice controls without NOTIFY."""
    newest = (
        select(func.max(signals.c.id))
        .where(signals.c.execution_id == executions.c.id, signals.c.consumed_by.is_(None))
        .scalar_subquery()
    )
    rows = conn.execute(
        select(executions.c.id, executions.c.cancel_requested, executions.c.paused, newest).where(
            executions.c.lease_owner == owner, executions.c.status == "running"
        )
    ).all()
    return [(r[0], bool(r[1]), bool(r[2]), r[3]) for r in rows]


def next_due(conn: Connection) -> datetime | None:
    """When the next waiting execution becomes due (lets an idle worker sleep until then)."""
    value: datetime | None = conn.execute(
        select(func.min(executions.c.available_at)).where(
            executions.c.status == "waiting", executions.c.paused.is_(False)
        )
    ).scalar()
    return value
