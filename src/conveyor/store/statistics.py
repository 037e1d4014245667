"""Statistics that stay fast with millions of executions.

Totals and counts by status come from counters maintained in the finishing transaction
(workflows, user_usage) or from index-backed counts; durations (average, p50, p95) are taken
over a bounded window of the most recent finished executions (``WINDOW``), which is what a
dashboard wants anyway and keeps every query O(window) rather than O(history).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from conveyor.store.history import ExecutionFilter, filtered
from conveyor.store.tables import executions, steps, user_usage, users, workflows

WINDOW = 1_000
NODE_WINDOW = 200
_LIVE = ("queued", "running", "waiting")


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def durations_summary(pairs: list[tuple[datetime | None, datetime | None]]) -> dict[str, Any]:
    values = sorted(
        (end - start).total_seconds() * 1000
        for start, end in pairs
        if start is not None and end is not None
    )
    return {
        "sample": len(values),
        "avg_ms": round(sum(values) / len(values), 1) if values else None,
        "p50_ms": percentile(values, 0.50),
        "p95_ms": percentile(values, 0.95),
    }


def workflow_stats(conn: Connection, workflow_id: str) -> dict[str, Any]:
    """Counters and live counts in one statement (one snapshot), durations over a window."""
    live_counts = {
        status: select(func.count())
        .where(executions.c.workflow_id == workflow_id, executions.c.status == status)
        .scalar_subquery()
        .label(status)
        for status in _LIVE
    }
    w = (
        conn.execute(select(workflows, *live_counts.values()).where(workflows.c.id == workflow_id))
        .mappings()
        .one()
    )
    live = {status: int(w[status]) for status in _LIVE}
    finished = w["executions_finished"]
    recent = conn.execute(
        select(executions.c.started_at, executions.c.finished_at)
        .where(executions.c.workflow_id == workflow_id, executions.c.finished_at.is_not(None))
        .order_by(executions.c.finished_at.desc())
        .limit(WINDOW)
    ).all()
    by_status = {
        "succeeded": w["executions_succeeded"],
        "failed": w["executions_failed"],
        "cancelled": w["executions_cancelled"],
        "timed_out": w["executions_timed_out"],
        **{status: live.get(status, 0) for status in _LIVE},
    }
    return {
        "executions": finished + sum(live.values()),
        "finished": finished,
        "by_status": by_status,
        "success_rate": round(w["executions_succeeded"] / finished, 4) if finished else None,
        "avg_duration_ms_all_time": round(w["duration_total_ms"] / finished, 1)
        if finished
        else None,
        "last_executed_at": w["last_executed_at"],
        "durations": durations_summary([(r.started_at, r.finished_at) for r in recent]),
    }


def node_stats(conn: Connection, workflow_id: str) -> list[dict[str, Any]]:
    """Per node, over the steps of the workflow's most recent ``NODE_WINDOW`` executions."""
    recent = (
        conn.execute(
            select(executions.c.id)
            .where(executions.c.workflow_id == workflow_id)
            .order_by(executions.c.created_at.desc())
            .limit(NODE_WINDOW)
        )
        .scalars()
        .all()
    )
    rows = (
        conn.execute(
            select(steps.c.node_id, steps.c.status, steps.c.started_at, steps.c.finished_at).where(
                steps.c.execution_id.in_(recent), steps.c.attempt > 0
            )
        ).all()
        if recent
        else []
    )
    per: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"attempts": 0, "succeeded": 0, "failed": 0, "pairs": []}
    )
    for r in rows:
        entry = per[r.node_id]
        entry["attempts"] += 1
        if r.status == "succeeded":
            entry["succeeded"] += 1
        elif r.status in ("failed", "interrupted"):
            entry["failed"] += 1
        entry["pairs"].append((r.started_at, r.finished_at))
    result = []
    for node_id, entry in sorted(per.items()):
        done = entry["succeeded"] + entry["failed"]
        summary = durations_summary(entry.pop("pairs"))
        result.append(
            {
                "node_id": node_id,
                **entry,
                "success_rate": round(entry["succeeded"] / done, 4) if done else None,
                "p50_ms": summary["p50_ms"],
                "p95_ms": summary["p95_ms"],
            }
        )
    return result


def user_stats(conn: Connection, workspace_id: str) -> list[dict[str, Any]]:
    """Per user who started executions here, with their email and name (None for a user
    deleted since)."""
    rows = (
        conn.execute(
            select(user_usage, users.c.email, users.c.name)
            .outerjoin(users, users.c.id == user_usage.c.user_id)
            .where(user_usage.c.workspace_id == workspace_id)
            .order_by(user_usage.c.executions.desc())
        )
        .mappings()
        .all()
    )
    return [
        {
            "user_id": r["user_id"],
            "email": r["email"],
            "name": r["name"],
            "executions": r["executions"],
            "tokens": r["tokens"],
            "api_calls": r["api_calls"],
            "last_executed_at": r["last_executed_at"],
        }
        for r in rows
    ]


def list_stats(conn: Connection, f: ExecutionFilter) -> dict[str, Any]:
    """The stats block of an execution list: counts by status for the filter (from the
    counters when the filter is just a workspace or a workflow), and durations over its most
    recent ``WINDOW`` finished executions."""
    simple = not (
        f.status
        or f.trigger_type
        or f.created_by
        or f.created_after
        or f.created_before
        or f.error_contains
    )
    counts = (
        _counted(conn, f)
        if simple
        else {
            str(status): int(n)
            for status, n in conn.execute(
                filtered(select(executions.c.status, func.count()), f).group_by(executions.c.status)
            ).all()
        }
    )
    counts = {s: n for s, n in counts.items() if n}
    total = sum(counts.values())
    finished = sum(n for s, n in counts.items() if s not in _LIVE)
    recent = conn.execute(
        filtered(select(executions.c.started_at, executions.c.finished_at), f)
        .where(executions.c.finished_at.is_not(None))
        .order_by(executions.c.created_at.desc())
        .limit(WINDOW)
    ).all()
    return {
        "total": total,
        "by_status": counts,
        "success_rate": round(counts.get("succeeded", 0) / finished, 4) if finished else None,
        **durations_summary([(r.started_at, r.finished_at) for r in recent]),
    }


def _counted(conn: Connection, f: ExecutionFilter) -> dict[str, int]:
    """Counts by status from the finishing-transaction counters plus index-backed counts of
    the live statuses: O(workflows), whatever the history size. One statement, so one
    snapshot: an execution that finishes meanwhile is counted exactly once."""
    w = workflows.c
    scope = w.workspace_id == f.workspace_id
    if f.workflow_id is not None:
        scope = scope & (w.id == f.workflow_id)
    live = {
        status: filtered(select(func.count()), f)
        .where(executions.c.status == status)
        .scalar_subquery()
        for status in _LIVE
    }
    row = conn.execute(
        select(
            func.coalesce(func.sum(w.executions_succeeded), 0),
            func.coalesce(func.sum(w.executions_failed), 0),
            func.coalesce(func.sum(w.executions_cancelled), 0),
            func.coalesce(func.sum(w.executions_timed_out), 0),
            *live.values(),
        ).where(scope)
    ).one()
    names = ("succeeded", "failed", "cancelled", "timed_out", *live)
    return {name: int(value) for name, value in zip(names, row, strict=True)}
