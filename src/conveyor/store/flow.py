"""Flow control at claim time: concurrency per workflow, per key and per user (the
workspace's running limit for each user who starts executions), and rate limits.

The claim query pre-filters saturated keys; :func:`admit` then decides exactly, holding a
lock per key for the rest of the claim transaction (PostgreSQL advisory locks; SQLite's
``BEGIN IMMEDIATE`` already serializes claimers), so two workers can never both take the
last slot. Slots are the running executions themselves: a dead worker's executions keep
their slots only until their leases expire and they are claimed again, so none can leak.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from conveyor.store.database import StoreDialect
from conveyor.store.tables import executions


def admit(
    conn: Connection, dialect: StoreDialect, candidates: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """The candidates that fit every limit, in order."""
    limited = [
        c
        for c in candidates
        if c["key_limit"] or c["workflow_limit"] or c["rate_limit"] or c["user_limit"]
    ]
    if not limited:
        return candidates
    keys = {c["concurrency_key"] for c in limited if c["key_limit"]}
    workflows = {c["workflow_id"] for c in limited if c["workflow_limit"]}
    starters = {_user(c) for c in limited if c["user_limit"]}
    rated = {
        c["workflow_id"]: (c["rate_limit"], c["rate_period_seconds"])
        for c in limited
        if c["rate_limit"]
    }
    dialect.lock_keys(
        conn,
        sorted(
            {f"key:{k}" for k in keys}
            | {f"workflow:{w}" for w in workflows | set(rated)}
            | {f"user:{w}:{u}" for w, u in starters}
        ),
    )
    by_key = _running(conn, executions.c.concurrency_key, keys)
    by_workflow = _running(conn, executions.c.workflow_id, workflows)
    by_user = _running_users(conn, starters)
    started = _started(conn, rated, now)
    chosen = []
    for c in candidates:
        recovering = c["status"] == "running"
        if not recovering and not (
            _fits(c, by_key, by_workflow, started) and _user_fits(c, by_user)
        ):
            continue
        chosen.append(c)
        if not recovering:
            by_key[c["concurrency_key"]] += 1
            by_workflow[c["workflow_id"]] += 1
            by_user[_user(c)] += 1
        if c["started_at"] is None:
            started[c["workflow_id"]] += 1
    return chosen


def _fits(
    c: dict[str, Any], by_key: Counter[Any], by_workflow: Counter[Any], started: Counter[Any]
) -> bool:
    if c["key_limit"] and by_key[c["concurrency_key"]] >= c["key_limit"]:
        return False
    if c["workflow_limit"] and by_workflow[c["workflow_id"]] >= c["workflow_limit"]:
        return False
    return not (
        c["rate_limit"] and c["started_at"] is None and started[c["workflow_id"]] >= c["rate_limit"]
    )


def _user(c: dict[str, Any]) -> tuple[str, str | None]:
    """The per-user limit counts a user's running executions in one workspace."""
    return (c["workspace_id"], c["created_by"])


def _user_fits(c: dict[str, Any], by_user: Counter[Any]) -> bool:
    return not (c["user_limit"] and by_user[_user(c)] >= c["user_limit"])


def _running_users(conn: Connection, starters: set[tuple[str, str | None]]) -> Counter[Any]:
    if not starters:
        return Counter()
    rows = conn.execute(
        select(executions.c.workspace_id, executions.c.created_by, func.count())
        .where(
            executions.c.workspace_id.in_({w for w, _ in starters}),
            executions.c.created_by.in_({u for _, u in starters}),
            executions.c.status == "running",
        )
        .group_by(executions.c.workspace_id, executions.c.created_by)
    ).all()
    return Counter({(r[0], r[1]): r[2] for r in rows})


def _running(conn: Connection, column: Any, values: set[Any]) -> Counter[Any]:
    if not values:
        return Counter()
    rows = conn.execute(
        select(column, func.count())
        .where(column.in_(values), executions.c.status == "running")
        .group_by(column)
    ).all()
    return Counter({r[0]: r[1] for r in rows})


def _started(conn: Connection, rated: dict[str, tuple[int, float]], now: datetime) -> Counter[Any]:
    counts: Counter[Any] = Counter()
    for workflow_id, (_limit, period) in rated.items():
        since = now - timedelta(seconds=period)
        counts[workflow_id] = conn.execute(
            select(func.count()).where(
                executions.c.workflow_id == workflow_id, executions.c.started_at > since
            )
        ).scalar_one()
    return counts


def blocked_reason(conn: Connection, row: dict[str, Any], now: datetime) -> str | None:
    """Why a queued execution is not running now, or None when nothing holds it back."""
    if row["paused"]:
        return "paused"
    if row["key_limit"]:
        n = _running(conn, executions.c.concurrency_key, {row["concurrency_key"]})
        count = n[row["concurrency_key"]]
        if count >= row["key_limit"]:
            return f"concurrency key {row['concurrency_key']} at {count}/{row['key_limit']}"
    if row["workflow_limit"]:
        count = _running(conn, executions.c.workflow_id, {row["workflow_id"]})[row["workflow_id"]]
        if count >= row["workflow_limit"]:
            return f"workflow concurrency at {count}/{row['workflow_limit']}"
    if row["user_limit"]:
        count = _running_users(conn, {_user(row)})[_user(row)]
        if count >= row["user_limit"]:
            return f"its user's running executions at {count}/{row['user_limit']}"
    if row["rate_limit"]:
        period = row["rate_period_seconds"]
        count = _started(conn, {row["workflow_id"]: (row["rate_limit"], period)}, now)[
            row["workflow_id"]
        ]
        if count >= row["rate_limit"]:
            return f"rate limit {row['rate_limit']} per {period:g}s reached ({count} started)"
    if row["available_at"] > now:
        return f"not before {row['available_at'].isoformat()}"
    return None
