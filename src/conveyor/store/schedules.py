"""The schedule queries the scheduler and the schedule commands run (sync, on a Connection).

Exactly once: the scheduler handles a schedule inside one transaction that holds its row
(PostgreSQL ``FOR UPDATE SKIP LOCKED``: another scheduler passes it by; SQLite: ``BEGIN
IMMEDIATE`` serializes writers) and re-reads ``next_fire_at`` under that lock, so a second
scheduler sees the occurrence already handled. Behind that, each occurrence is one
``schedule_fires`` row under UNIQUE(schedule_id, nominal_at), and its execution carries the
idempotency key ``schedule:<id>:<nominal>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.engine.state import TERMINAL, ExecutionStatus
from conveyor.errors import Conflict, NotFound
from conveyor.store.tables import executions, schedule_fires, schedules, workflows

_UNFINISHED = [s.value for s in ExecutionStatus if s not in TERMINAL]
FIRE_STATUSES = ("started", "skipped", "missed", "buffered")
# Schedules of archived workflows are not looked at: nothing of theirs is due any more.
_LOOKED_AT = ("active", "paused", "draft")


def _live() -> Any:
    s = schedules.c
    return and_(s.deleted_at.is_(None), s.enabled.is_(True), workflows.c.status.in_(_LOOKED_AT))


def _columns() -> list[Any]:
    s = schedules.c
    return [
        s.id,
        s.workspace_id,
        s.workflow_id,
        s.spec,
        s.next_fire_at,
        s.last_fire_at,
        s.created_at,
        s.updated_at,
        workflows.c.status.label("workflow_status"),
    ]


def candidates(conn: Connection, now: datetime) -> list[Any]:
    """Schedules that may have something to do: due (by nominal time; jitter is checked
    later), not computed yet, or holding a buffered occurrence of an active workflow."""
    s = schedules.c
    buffered = exists().where(
        schedule_fires.c.schedule_id == s.id, schedule_fires.c.status == "buffered"
    )
    query = (
        select(*_columns(), buffered.label("has_buffered"))
        .select_from(schedules.join(workflows, workflows.c.id == s.workflow_id))
        .where(_live())
        .where(
            or_(
                s.next_fire_at.is_(None),
                s.next_fire_at <= now,
                and_(workflows.c.status == "active", buffered),
            )
        )
        .order_by(s.next_fire_at)
    )
    return list(conn.execute(query))


def next_due(conn: Connection) -> datetime | None:
    """The earliest nominal time among live schedules (the scheduler sleeps until then)."""
    query = (
        select(func.min(schedules.c.next_fire_at))
        .select_from(schedules.join(workflows, workflows.c.id == schedules.c.workflow_id))
        .where(_live())
    )
    value: datetime | None = conn.execute(query).scalar()
    return value


def lock(conn: Connection, schedule_id: str) -> Any:
    """The live schedule, locked for this transaction; None when it is gone, disabled, or
    another scheduler holds it right now."""
    query = (
        select(*_columns())
        .select_from(schedules.join(workflows, workflows.c.id == schedules.c.workflow_id))
        .where(schedules.c.id == schedule_id, _live())
        .with_for_update(skip_locked=True, of=schedules)
    )
    return conn.execute(query).first()


def lock_for_backfill(conn: Connection, workspace_id: str, schedule_id: str) -> Any:
    """The schedule (enabled or not), locked until the backfill commits: backfills of one
    schedule take turns, and the scheduler passes it by meanwhile."""
    query = (
        select(*_columns())
        .select_from(schedules.join(workflows, workflows.c.id == schedules.c.workflow_id))
        .where(
            schedules.c.id == schedule_id,
            schedules.c.workspace_id == workspace_id,
            schedules.c.deleted_at.is_(None),
        )
        .with_for_update(of=schedules)
    )
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"schedule '{schedule_id}' not found")
    if row.workflow_status == "archived":
        raise Conflict("the workflow is archived; restore it before a backfill")
    return row


def advance(
    conn: Connection,
    schedule_id: str,
    next_fire_at: datetime,
    last_fire_at: datetime | None,
) -> None:
    values: dict[str, Any] = {"next_fire_at": next_fire_at}
    if last_fire_at is not None:
        values["last_fire_at"] = last_fire_at
    conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(**values))


def unfinished(conn: Connection, workflow_id: str, schedule_id: str) -> list[str]:
    """Executions this schedule started that have not finished (the overlap policy). By
    the workflow's unfinished executions (ix_executions_workflow_status), so the cost does
    not grow with the schedule's history."""
    query = select(executions.c.id).where(
        executions.c.workflow_id == workflow_id,
        executions.c.status.in_(_UNFINISHED),
        executions.c.trigger_id == schedule_id,
    )
    return list(conn.execute(query).scalars())


def buffered(conn: Connection, schedule_id: str) -> list[tuple[int, datetime]]:
    """Buffered occurrences, oldest first: (fire row id, nominal time)."""
    f = schedule_fires.c
    query = (
        select(f.id, f.nominal_at)
        .where(f.schedule_id == schedule_id, f.status == "buffered")
        .order_by(f.nominal_at)
    )
    return [(int(r.id), r.nominal_at) for r in conn.execute(query)]


def recorded(conn: Connection, schedule_id: str, nominals: list[datetime]) -> dict[datetime, Any]:
    """The fire rows that already exist for these nominal times."""
    if not nominals:
        return {}
    f = schedule_fires.c
    query = select(f.id, f.nominal_at, f.status).where(
        f.schedule_id == schedule_id, f.nominal_at.in_(nominals)
    )
    return {r.nominal_at: r for r in conn.execute(query)}


def record(
    conn: Connection,
    schedule_id: str,
    nominal: datetime,
    status: str,
    reason: str | None,
    execution_id: str | None,
    now: datetime,
) -> None:
    """Insert one occurrence's row (IntegrityError if it exists: exactly once)."""
    conn.execute(
        insert(schedule_fires),
        {
            "schedule_id": schedule_id,
            "nominal_at": nominal,
            "status": status,
            "reason": reason,
            "execution_id": execution_id,
            "created_at": now,
        },
    )


def record_once(
    conn: Connection,
    schedule_id: str,
    nominal: datetime,
    status: str,
    reason: str | None,
    execution_id: str | None,
    now: datetime,
) -> bool:
    """:func:`record` in a savepoint; False when the occurrence already has a row."""
    try:
        with conn.begin_nested():
            record(conn, schedule_id, nominal, status, reason, execution_id, now)
    except IntegrityError:
        return False
    return True


def mark(
    conn: Connection,
    fire_id: int,
    status: str,
    reason: str | None,
    execution_id: str | None,
    *,
    only_if: tuple[str, ...],
) -> bool:
    """Change a fire row's status if it still has one of ``only_if`` (a backfill starting
    a missed occurrence, a buffered one starting): True when this call changed it."""
    f = schedule_fires.c
    changed = conn.execute(
        update(schedule_fires)
        .where(f.id == fire_id, f.status.in_(only_if))
        .values(status=status, reason=reason, execution_id=execution_id)
    ).rowcount
    return bool(changed)


def list_fires(
    conn: Connection, schedule_id: str, status: str | None, limit: int
) -> list[dict[str, Any]]:
    """A schedule's occurrences, newest first."""
    f = schedule_fires.c
    query = select(schedule_fires).where(f.schedule_id == schedule_id)
    if status is not None:
        query = query.where(f.status == status)
    query = query.order_by(f.nominal_at.desc()).limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def list_for_workspace(conn: Connection, workspace_id: str) -> list[dict[str, Any]]:
    """Live schedules of a workspace, with their workflow's name and status."""
    query = (
        select(
            schedules,
            workflows.c.name.label("workflow_name"),
            workflows.c.status.label("workflow_status"),
        )
        .select_from(schedules.join(workflows, workflows.c.id == schedules.c.workflow_id))
        .where(schedules.c.workspace_id == workspace_id, schedules.c.deleted_at.is_(None))
        .order_by(workflows.c.name, schedules.c.key)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def fire_counts(conn: Connection, workspace_id: str | None = None) -> dict[str, int]:
    """Occurrences recorded, by status, over every schedule (the /metrics counters), or
    over one workspace's."""
    query = select(schedule_fires.c.status, func.count()).group_by(schedule_fires.c.status)
    if workspace_id is not None:
        query = query.where(
            schedule_fires.c.schedule_id.in_(
                select(schedules.c.id).where(schedules.c.workspace_id == workspace_id)
            )
        )
    found = {str(status): int(n) for status, n in conn.execute(query)}
    return {status: found.get(status, 0) for status in FIRE_STATUSES}
