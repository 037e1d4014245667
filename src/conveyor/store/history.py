"""Reading executions back: lists with filters and cursors, details with steps, events,
and the selections that bulk actions walk through."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Text,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
)

from conveyor.errors import NotFound
from conveyor.store import flow
from conveyor.store.database import StoreDialect
from conveyor.store.tables import (
    UTCDateTime,
    dumps,
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
    status: str | Sequence[str] | None = None  # one status, or any of several
    workflow_id: str | None = None
    trigger_type: str | None = None
    trigger_id: str | None = None  # the schedule or webhook that started it
    created_by: str | None = None  # a user id, or an email (it has an "@")
    created_after: datetime | None = None
    created_before: datetime | None = None
    error_contains: str | None = None
    search: str | None = None  # text in the error or the input, any case
    limit: int = 50
    cursor: tuple[datetime, str] | None = None
    offset: int = 0  # rows skipped after the cursor (or from the start)


_INPUT_OF = execution_inputs.c.execution_id == executions.c.id


def statuses(f: ExecutionFilter) -> list[str]:
    """The filter's statuses as a list (empty: any status)."""
    if f.status is None:
        return []
    return [f.status] if isinstance(f.status, str) else list(f.status)


def filtered(query: Select[Any], f: ExecutionFilter) -> Select[Any]:
    """Apply a filter (always scoped to the workspace) to a query over executions."""
    c = executions.c
    query = query.where(c.workspace_id == f.workspace_id)
    wanted = statuses(f)
    if wanted:
        query = query.where(c.status == wanted[0] if len(wanted) == 1 else c.status.in_(wanted))
    for column, value in (
        (c.workflow_id, f.workflow_id),
        (c.trigger_type, f.trigger_type),
        (c.trigger_id, f.trigger_id),
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
        query = query.where(_contains(c.error, f.error_contains))
    if f.search:
        query = query.where(_searched(f))
    return query


SEARCH_WINDOW = 10_000


def _searched(f: ExecutionFilter) -> ColumnElement[bool]:
    """The text search, bounded: it looks through the ``SEARCH_WINDOW`` most recent
    executions matching the rest of the filter (a time range reaches older ones). Text in
    JSON has no index, so this keeps a search O(window) instead of O(history), and the
    list, its counts and a bulk action over the same filter see the same executions.

    The window is a time bound (the creation time of its oldest execution, found by one
    index walk), so each planner reads it as a plain index range."""
    c = executions.c
    oldest = (
        filtered(select(c.created_at), replace(f, search=None))
        .order_by(c.created_at.desc())
        .offset(SEARCH_WINDOW - 1)
        .limit(1)
        .scalar_subquery()
    )
    since = func.coalesce(oldest, literal(_EPOCH, UTCDateTime()))
    # Per row, through the primary key (an EXISTS here may be planned as a scan of every
    # input); an alias, as the list's own query reads execution_inputs too.
    searched = execution_inputs.alias("searched")
    input_text = select(searched.c.input).where(searched.c.execution_id == c.id).scalar_subquery()
    needle = f.search or ""
    return (c.created_at >= since) & or_(_contains(c.error, needle), _contains(input_text, needle))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _contains(json_column: Any, text: str) -> ColumnElement[bool]:
    """``text`` anywhere in a JSON column's stored text, any case, with ``%`` and ``_``
    taken literally. The text is looked for as JSON writes it, so a quote or a newline
    in it matches the same character inside a stored string."""
    needle = dumps(text.lower())[1:-1]
    return func.lower(cast(json_column, Text)).contains(needle, autoescape=True)


def _user_id(ref: str) -> Any:
    """A user id, or the id of the user with that email (emails are stored lower-case)."""
    if "@" not in ref:
        return ref
    return select(users.c.id).where(users.c.email == ref.strip().lower()).scalar_subquery()


def list_executions(conn: Connection, f: ExecutionFilter) -> list[dict[str, Any]]:
    """Newest first; the cursor is the (created_at, id) of the last row of the previous page."""
    # The input and the workflow name as scalar subqueries, not joins: with executions the
    # only table in FROM, SQLite walks the (…, created_at) index in order and stops after
    # ``limit`` rows, whatever its statistics (joined, it may start from workflows instead
    # and sort every execution).
    input_of = select(execution_inputs.c.input).where(_INPUT_OF).scalar_subquery()
    name_of = (
        select(workflows.c.name).where(workflows.c.id == executions.c.workflow_id).scalar_subquery()
    )
    query = (
        filtered(select(executions, input_of.label("input"), name_of.label("workflow_name")), f)
        .order_by(executions.c.created_at.desc(), executions.c.id.desc())
        .limit(f.limit)
        .offset(f.offset)
    )
    if f.cursor:
        query = query.where(tuple_(executions.c.created_at, executions.c.id) < tuple_(*f.cursor))
    return [dict(r) for r in conn.execute(query).mappings().all()]


def get_execution(
    conn: Connection,
    workspace_id: str,
    execution_id: str,
    now: datetime,
    payloads: Payloads | None = None,
) -> dict[str, Any]:
    """An execution with its workflow name, version and every step attempt (their big
    payloads left in the database when ``payloads`` says so)."""
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
                executions.c.id.startswith(execution_id, autoescape=True)
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
    detail["steps"] = _steps(conn, detail["id"], payloads)
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


def step_children(
    conn: Connection,
    workspace_id: str,
    parent_id: str,
    node_id: str,
    parent_created_at: datetime,
) -> list[dict[str, Any]]:
    """The executions one step of a parent started, with their idempotency keys and inputs,
    oldest first (bounded like :func:`child_executions`)."""
    c = executions.c
    query = (
        select(
            c.id,
            c.idempotency_key,
            workflows.c.name.label("workflow_name"),
            execution_inputs.c.input,
        )
        .join(workflows, workflows.c.id == c.workflow_id)
        .join(execution_inputs, _INPUT_OF)
        .where(
            c.workspace_id == workspace_id,
            c.created_at >= parent_created_at,
            c.parent_execution_id == parent_id,
            c.parent_node_id == node_id,
        )
        .order_by(c.created_at, c.id)
    )
    return [dict(r) for r in conn.execute(query).mappings().all()]


@dataclass(frozen=True)
class Payloads:
    """Step payloads (input, output, error, logs) bigger than ``max_bytes`` of stored JSON
    are read as ``{"truncated": true, "bytes": N}``: the database measures them and never
    sends them, so a page over a multi-megabyte execution stays fast."""

    dialect: StoreDialect
    max_bytes: int


STEP_PAYLOADS = ("input", "output", "error", "logs")


def _steps(conn: Connection, execution_id: str, payloads: Payloads | None) -> list[dict[str, Any]]:
    query = select(steps).where(steps.c.execution_id == execution_id).order_by(steps.c.id)
    if payloads is not None:
        columns: list[Any] = [c for c in steps.c if c.name not in STEP_PAYLOADS]
        for name in STEP_PAYLOADS:
            size = payloads.dialect.json_bytes(steps.c[name])
            big = size > payloads.max_bytes
            columns.append(case((big, null()), else_=steps.c[name]).label(name))
            columns.append(case((big, size), else_=null()).label(f"{name}_bytes"))
        query = query.with_only_columns(*columns)
    rows = [dict(r) for r in conn.execute(query).mappings().all()]
    for row in rows:
        for name in STEP_PAYLOADS:
            size = row.pop(f"{name}_bytes", None)
            if size is not None:
                row[name] = {"truncated": True, "bytes": int(size)}
    return rows


def step_payload(
    conn: Connection,
    workspace_id: str,
    execution_id: str,
    node_id: str,
    part: str,
    attempt: int | None = None,
) -> tuple[dict[str, Any], Any]:
    """One step attempt's full payload (``part``: input, output, error or logs): the
    attempt's (execution id, node id, attempt) and the value. The latest attempt unless
    ``attempt`` is given."""
    if part not in STEP_PAYLOADS:
        raise NotFound(f"a step has no '{part}'")
    execution = _execution_id(conn, workspace_id, execution_id)
    query = (
        select(steps.c.execution_id, steps.c.node_id, steps.c.attempt, steps.c[part])
        .where(steps.c.execution_id == execution, steps.c.node_id == node_id)
        .order_by(steps.c.attempt.desc())
        .limit(1)
    )
    if attempt is not None:
        query = query.where(steps.c.attempt == attempt)
    row = conn.execute(query).mappings().first()
    if row is None:
        which = f"attempt {attempt} of " if attempt is not None else ""
        raise NotFound(f"execution {execution} has no {which}step of node '{node_id}'")
    found = dict(row)
    return found, found.pop(part)


def _execution_id(conn: Connection, workspace_id: str, execution_id: str) -> str:
    """The full id of an execution of the workspace, from its id or an unambiguous prefix."""
    c = executions.c
    found = (
        conn.execute(
            select(c.id)
            .where(
                c.workspace_id == workspace_id,
                c.id.startswith(execution_id, autoescape=True)
                if len(execution_id) < 32
                else c.id == execution_id,
            )
            .limit(2)
        )
        .scalars()
        .all()
    )
    if not found:
        raise NotFound(f"execution '{execution_id}' not found")
    if len(found) > 1:
        raise NotFound(f"execution id prefix '{execution_id}' is ambiguous")
    return str(found[0])


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


# -- selections for bulk actions ------------------------------------------------------------


def count_by_status(conn: Connection, f: ExecutionFilter) -> dict[str, int]:
    """How many executions the filter matches, per status."""
    query = filtered(select(executions.c.status, func.count()), f).group_by(executions.c.status)
    return {str(status): int(n) for status, n in conn.execute(query).all()}


def statuses_of(conn: Connection, workspace_id: str, ids: Sequence[str]) -> dict[str, str]:
    """The status of each of ``ids`` that is an execution of the workspace (full ids)."""
    found: dict[str, str] = {}
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = list(ids[start : start + _ID_CHUNK])
        rows = conn.execute(
            select(executions.c.id, executions.c.status).where(
                executions.c.workspace_id == workspace_id, executions.c.id.in_(chunk)
            )
        ).all()
        found.update({str(r.id): str(r.status) for r in rows})
    return found


def count_ids_by_status(conn: Connection, workspace_id: str, ids: Sequence[str]) -> dict[str, int]:
    return dict(Counter(statuses_of(conn, workspace_id, ids).values()))


def next_batch(
    conn: Connection,
    f: ExecutionFilter,
    among: Sequence[str],
    before: tuple[datetime, str] | None,
    size: int,
) -> list[tuple[datetime, str]]:
    """The next ``size`` executions matching the filter whose status is among ``among``,
    newest first, strictly before ``before`` (created_at, id): a bulk action walks its
    selection with this keyset, so executions it creates (newer) are never visited and
    each batch is its own short transaction."""
    c = executions.c
    query = (
        filtered(select(c.created_at, c.id), f)
        .where(c.status.in_(list(among)))
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(size)
    )
    if before is not None:
        query = query.where(tuple_(c.created_at, c.id) < tuple_(*before))
    return [(r.created_at, str(r.id)) for r in conn.execute(query).all()]


_ID_CHUNK = 500
