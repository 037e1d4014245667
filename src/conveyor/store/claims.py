"""Claiming executions under leases: claim (with flow control), load what the runner needs to
resume, heartbeats, release, and the control state workers poll (sync, on a Connection)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Float,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)

from conveyor.engine.interfaces import ClaimedExecution, Lease, Signal, StepRecord
from conveyor.engine.state import ExecutionStatus, StepStatus
from conveyor.store import accounts, flow
from conveyor.store.channels import WAKE_CHANNEL
from conveyor.store.database import StoreDialect
from conveyor.store.tables import (
    UTCDateTime,
    execution_inputs,
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
    executions.c.suspect,
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


def _ready(dialect: StoreDialect) -> Any:
    """Queued or waiting and due (by the worker's clock), not paused, or running with a
    lease the database clock says has expired (a recovery)."""
    c = executions.c
    due = and_(
        c.status.in_(["queued", "waiting"]), c.available_at <= bindparam("now", type_=UTCDateTime())
    )
    expired = and_(c.status == "running", c.lease_expires_at < dialect.now())
    return and_(or_(due, expired), c.paused.is_(False))


def _suspect_waiting(dialect: StoreDialect) -> Any:
    """Whether a suspect is ready to run alone (a lookup in an index that is empty but for
    suspects). While one is, busy workers claim nothing, so some worker becomes idle and
    takes it: suspects are never starved by a backlog."""

    def col(name: str, type_: Any = None) -> Any:
        return literal_column(f"suspects.{name}", type_)

    due = and_(
        col("status").in_(["queued", "waiting"]),
        col("available_at", UTCDateTime()) <= bindparam("now", type_=UTCDateTime()),
    )
    expired = and_(
        col("status") == "running", col("lease_expires_at", UTCDateTime()) < dialect.now()
    )
    source = text(f"executions AS suspects {dialect.index_hint('ix_executions_suspect')}")
    return (
        select(literal_column("1"))
        .select_from(source)
        .where(col("suspect"), or_(due, expired), col("paused", Boolean()).is_(False))
        .exists()
    )


def _candidates(dialect: StoreDialect, variant: str) -> Any:
    """Ready executions, priority first, then their place in line (``available_at``, which
    a release or a recovery leaves alone). Concurrency limits are pre-filtered here and
    checked exactly by ``flow.admit``.

    Variants: ``busy`` (a worker running something: no suspects, and nothing at all while
    a suspect waits), ``idle`` (no suspects), ``suspect`` (only suspects: an idle worker
    runs one alone), ``one`` (the execution given) and ``family`` (the executions given and
    their children: ``conveyor run``)."""
    c = executions.c
    query = (
        select(*_CANDIDATE)
        .where(_ready(dialect))
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
    if variant == "busy":
        return query.where(c.suspect.is_(False), ~_suspect_waiting(dialect))
    if variant == "idle":
        return query.where(c.suspect.is_(False))
    if variant == "suspect":
        return query.where(text("executions.suspect"))
    if variant == "one":
        return query.where(c.id == bindparam("execution_id"))
    assert variant == "family"
    family: Any = bindparam("family", expanding=True)
    return query.where(or_(c.id.in_(family), c.parent_execution_id.in_(family)))


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
    executions.c.status,
    executions.c.trigger_type,
    executions.c.lease_number,
    executions.c.created_at,
    executions.c.started_at,
    executions.c.deadline_at,
    executions.c.cancel_requested,
    executions.c.recoveries,
    executions.c.crashes,
    executions.c.paused,
    executions.c.created_by,
)
_BUILT: dict[tuple[str, str], Any] = {}
_VARIANTS = ("busy", "idle", "suspect", "one", "family", "any")


def _built(dialect: StoreDialect, name: str) -> Any:
    key = (dialect.name, name)
    if key not in _BUILT:
        if name == "take":
            _BUILT[key] = _take(dialect)
        elif name == "any":
            _BUILT[key] = _any_candidate(dialect)
        else:
            assert name in _VARIANTS
            _BUILT[key] = _candidates(dialect, name)
    return _BUILT[key]


def _any_candidate(dialect: StoreDialect) -> Any:
    """Is anything at all ready (an idle worker's look before it claims, suspects too)?"""
    return select(executions.c.id).where(_ready(dialect)).limit(bindparam("limit"))


def claim(
    conn: Connection,
    dialect: StoreDialect,
    *,
    owner: str,
    lease_seconds: float,
    limit: int,
    now: datetime,
    execution_id: str | None = None,
    family: set[str] | None = None,
    idle: bool = False,
) -> list[ClaimedExecution]:
    """Take up to ``limit`` ready executions under a new lease each: the one given, the
    ``family`` given (and their children), or any. An ``idle`` worker (running nothing)
    first looks for a suspect to run alone.

    Concurrency limits are then checked exactly under per-key locks (see
    :func:`conveyor.store.flow.admit`), so they hold across processes."""
    base: dict[str, Any] = {"now": now, "limit": limit}
    take = {"owner": owner, "lease_seconds": lease_seconds, "now": now}
    if execution_id is not None:
        return _claim(conn, dialect, "one", base | {"execution_id": execution_id}, take)
    if family is not None:
        return _claim(conn, dialect, "family", base | {"family": sorted(family)}, take)
    if idle:
        alone = _claim(conn, dialect, "suspect", base | {"limit": 1}, take)
        if alone:
            return alone
    return _claim(conn, dialect, "idle" if idle else "busy", base, take)


def _claim(
    conn: Connection,
    dialect: StoreDialect,
    variant: str,
    params: dict[str, Any],
    take: dict[str, Any],
) -> list[ClaimedExecution]:
    candidates = conn.execute(_built(dialect, variant), params).mappings().all()
    chosen = flow.admit(conn, dialect, [dict(c) for c in candidates], params["now"])
    if not chosen:
        return []
    rows = conn.execute(_built(dialect, "take"), take | {"ids": [c["id"] for c in chosen]}).all()
    claimed = _load(conn, rows, take["owner"], {c["id"]: c for c in chosen})
    for execution in claimed:
        execution.lease_seconds = take["lease_seconds"]
    # Recoveries proper: the lease of a dead (or stopped) owner expired.
    expired = {c["id"] for c in chosen if c["status"] == "running"}
    if variant == "suspect":
        _count_crashes(conn, claimed, expired)
    elif variant in ("busy", "idle"):
        claimed = _set_suspects_aside(conn, dialect, claimed, expired)
    return claimed


def _in_flight(execution: ClaimedExecution) -> bool:
    """Whether a dead owner left a step of it running (node code was executing)."""
    return any(s.status == StepStatus.RUNNING for s in execution.steps.values())


def _set_suspects_aside(
    conn: Connection, dialect: StoreDialect, claimed: list[ClaimedExecution], expired: set[str]
) -> list[ClaimedExecution]:
    """Recoveries with a step in flight may be what killed their worker, and so may any of
    the others it ran: the crash cannot be pinned on one. Each goes back to its place in
    line as a suspect, to run alone; the rest are returned to run here."""
    suspects = [e.id for e in claimed if e.id in expired and _in_flight(e)]
    if not suspects:
        return claimed
    conn.execute(
        update(executions)
        .where(executions.c.id.in_(suspects))
        .values(status="queued", suspect=True, lease_owner=None, lease_expires_at=None)
    )
    dialect.notify(conn, WAKE_CHANNEL, "queued")  # an idle worker takes a suspect
    return [e for e in claimed if e.id not in suspects]


def _count_crashes(conn: Connection, claimed: list[ClaimedExecution], expired: set[str]) -> None:
    """A suspect runs alone: if its worker died with a step of it in flight, the crash is
    its own (G6)."""
    for execution in claimed:
        execution.isolated = True
        if execution.id in expired and _in_flight(execution):
            execution.crashes += 1
            conn.execute(
                update(executions)
                .where(executions.c.id == execution.id)
                .values(crashes=executions.c.crashes + 1)
            )


def peek(
    conn: Connection, dialect: StoreDialect, now: datetime, idle: bool = False
) -> tuple[bool, datetime | None]:
    """Without locking anything: is an execution ready, and if not, when is the next due?"""
    query = _built(dialect, "any" if idle else "busy")
    ready = conn.execute(query, {"now": now, "limit": 1}).first() is not None
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
    inputs: dict[str, Any] = {
        i.execution_id: i.input
        for i in conn.execute(
            select(execution_inputs.c.execution_id, execution_inputs.c.input).where(
                execution_inputs.c.execution_id.in_(ids)
            )
        )
    }
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
                input=inputs.get(r.id),
                status=ExecutionStatus(r.status),
                trigger_type=r.trigger_type,
                lease=Lease(owner, r.lease_number),
                created_at=r.created_at,
                started_at=r.started_at,
                deadline_at=r.deadline_at,
                cancel_requested=r.cancel_requested,
                recoveries=r.recoveries,
                crashes=r.crashes,
                steps=latest[r.id],
                first_claim=r.id in first,
                # Taken from a dead owner: its lease expired, or a suspect set aside with a
                # step still marked running.
                recovered=before[r.id]["status"] == "running"
                or any(s.status == StepStatus.RUNNING for s in latest[r.id].values()),
                signals=pending[r.id],
                paused=r.paused,
                user=starters.get(r.created_by) if r.created_by is not None else None,
            )
        )
    return claimed


def _definitions(
    conn: Connection, version_ids: set[str]
) -> dict[str, tuple[dict[str, Any], int, str]]:
    # Built locally: another thread (the server's embedded worker) may clear the cache.
    found = {v: d for v in version_ids if (d := _DEFINITIONS.get(v)) is not None}
    missing = [v for v in version_ids if v not in found]
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
            found[v.id] = _DEFINITIONS[v.id] = (v.definition, v.version, v.name)
    return found


def heartbeat(
    conn: Connection, dialect: StoreDialect, owner: str, lease_seconds: float, ids: list[str]
) -> list[tuple[str, bool]]:
    """Renew, in one statement, the leases ``owner`` holds on ``ids`` (the executions it
    still runs); return (id, cancel_requested). Only those: an execution the worker gave up
    after a failed write must expire, so that a worker able to write resumes it."""
    rows = conn.execute(
        update(executions)
        .where(
            executions.c.lease_owner == owner,
            executions.c.status == "running",
            executions.c.id.in_(ids),
        )
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


def status_of(conn: Connection, execution_id: str) -> ExecutionStatus | None:
    status = conn.execute(
        select(executions.c.status).where(executions.c.id == execution_id)
    ).scalar()
    return None if status is None else ExecutionStatus(status)
