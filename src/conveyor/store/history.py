"""Reading executions back: lists with filters and cursors, details with steps, events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, Text, cast, func, select, tuple_

from conveyor.errors import NotFound
from conveyor.store import flow
from conveyor.store.tables import (
    events,
    execution_inputs,
    executions,
    steps,
    users,
    workflow_versions,
    workflows,
)


@dataclass
class ExecutionFilter:
    workspace_id: str
    status: str | None = None
    workflow_id: str | None = None
    trigger_type: str | None = None
    created_by: str | None = None  # a user id, or an email (it has an "@")
    created_after: datetime | None = None
    created_before: datetime | None = None
    error_contains: str | None = None
    limit: int = 50
    cursor: tuple[datetime, str] | None = None
    offset: int = 0  # rows skipped after the cursor (or from the start)


_INPUT_OF = execution_inputs.c.execution_id == executions.c.id


def filtered(query: Select[Any], f: ExecutionFilter) -> Select[Any]:
    """Apply a filter (always scoped to the workspace) to a query over executions."""
    c = executions.c
    query = query.where(c.workspace_id == f.workspace_id)
    for column, value in (
        (c.status, f.status),
        (c.workflow_id, f.workflow_id),
        (c.trigger_type, f.trigger_type),
    ):
        if value is not None:
            query = query.where(column == value)
    if f.created_by is not None:
        query = query.where(c.created_by == _user_id(f.created_by))
    if f.created_after is not None:
        query = query.where(c.created_at >= f.created_after)
    if f.created_before is not None:
        query = query.where(c.created_at < f.created_before)
    if f.error_contains:
        needle = f.error_contains.lower().replace("\\", "").replace("%", "").replace("_", "")
        query = query.where(func.lower(cast(c.error, Text)).contains(needle))
    return query


def _user_id(ref: str) -> Any:
    """A user id, or the id of the user with that email (emails are stored lower-case)."""
    if "@" not in ref:
        return ref
    return select(users.c.id).where(users.c.email == ref.strip().lower()).scalar_subquery()


def list_executions(conn: Connection, f: ExecutionFilter) -> list[dict[str, Any]]:
    """Newest first; the cursor is the (created_at, id) of the last row of the previous page."""
    query = (
        filtered(
            select(executions, execution_inputs.c.input, workflows.c.name.label("workflow_name"))
            .join(workflows, workflows.c.id == executions.c.workflow_id)
            .join(execution_inputs, _INPUT_OF),
            f,
        )
        .order_by(executions.c.created_at.desc(), executions.c.id.desc())
        .limit(f.limit)
        .offset(f.offset)
    )
    if f.cursor:
        query = query.where(tuple_(executions.c.created_at, executions.c.id) < tuple_(*f.cursor))
    return [dict(r) for r in conn.execute(query).mappings().all()]


def get_execution(
    conn: Connection, workspace_id: str, execution_id: str, now: datetime
) -> dict[str, Any]:
    """An execution with its workflow name, version and every step attempt."""
    row = (
        conn.execute(
            select(
                executions,
                execution_inputs.c.input,
                workflows.c.name.label("workflow_name"),
                workflow_versions.c.version,
            )
            .join(workflows, workflows.c.id == executions.c.workflow_id)
            .join(execution_inputs, _INPUT_OF)
            .join(workflow_versions, workflow_versions.c.id == executions.c.version_id)
            .where(
                executions.c.workspace_id == workspace_id,
                executions.c.id.startswith(execution_id)
                if len(execution_id) < 32
                else executions.c.id == execution_id,
            )
            .limit(2)
        )
        .mappings()
        .all()
    )
    if not row:
        raise NotFound(f"execution '{execution_id}' not found")
    if len(row) > 1:
        raise NotFound(f"execution id prefix '{execution_id}' is ambiguous")
    detail = dict(row[0])
    detail["blocked_reason"] = None
    if detail["status"] in ("queued", "waiting"):
        reason = detail["wait_reason"] if detail["status"] == "waiting" else None
        reason = reason or flow.blocked_reason(conn, detail, now)
        if detail["paused"]:
            reason = "paused" + (f" ({reason})" if reason and reason != "paused" else "")
        detail["blocked_reason"] = reason
    detail["steps"] = [
        dict(s)
        for s in conn.execute(
            select(steps).where(steps.c.execution_id == detail["id"]).order_by(steps.c.id)
        )
        .mappings()
        .all()
    ]
    return detail


def child_executions(
    conn: Connection,
    workspace_id: str,
    parent_id: str,
    parent_created_at: datetime,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The executions a parent started (``workflow.call``), oldest first. Children are created
    after their parent: the range on the (workspace, created_at) index bounds the scan."""
    c = executions.c
    query = (
        select(
            c.id, c.status, c.parent_node_id, c.created_at, workflows.c.name.label("workflow_name")
        )
        .join(workflows, workflows.c.id == c.workflow_id)
        .where(
            c.workspace_id == workspace_id,
            c.created_at >= parent_created_at,
            c.parent_execution_id == parent_id,
        )
        .order_by(c.created_at, c.id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings().all()]


def events_after(
    conn: Connection, execution_id: str, after_seq: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            select(events)
            .where(events.c.execution_id == execution_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
            .limit(limit)
        )
        .mappings()
        .all()
    ]


def execution_row(conn: Connection, execution_id: str) -> dict[str, Any]:
    """The bare execution row, any workspace (for the runtime, never for callers)."""
    row = conn.execute(
        select(executions, execution_inputs.c.input)
        .join(execution_inputs, _INPUT_OF)
        .where(executions.c.id == execution_id)
    ).first()
    if row is None:
        raise NotFound(f"execution '{execution_id}' not found")
    return dict(row._mapping)
