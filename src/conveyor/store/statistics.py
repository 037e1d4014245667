"""Statistics that stay fast with millions of executions.

Totals and counts by status come from counters maintained in the finishing transaction
(workflows, user_usage) or from index-backed counts; durations (average, p50, p95) are taken
over a bounded window of the most recent finished executions (``WINDOW``), which is what a
dashboard wants anyway and keeps every query O(window) rather than O(history).

Statistics over a time range (per bucket of time, per workflow, per user) are grouped SQL
aggregates over the executions created in the range, read through the (workspace,
created_at) index; PostgreSQL computes their percentiles (``percentile_cont``), SQLite has
none, so they come from at most about ``SAMPLE`` durations, an even sample of the range.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Text, case, func, select, type_coerce

from conveyor.errors import InputError
from conveyor.store.database import StoreDialect
from conveyor.store.history import ExecutionFilter, filtered
from conveyor.store.tables import executions, steps, user_usage, users, workflows

WINDOW = 1_000
NODE_WINDOW = 200
USER_WINDOW = 200
SAMPLE = 20_000
MAX_BUCKETS = 500
_LIVE = ("queued", "running", "waiting")
_FRACTIONS = (0.50, 0.95)
BUCKETS = {
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}


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
    deleted since): all-time counters, and durations over each user's ``USER_WINDOW`` most
    recent finished executions."""
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
            **_user_durations(conn, workspace_id, r["user_id"]),
        }
        for r in rows
    ]


def _user_durations(conn: Connection, workspace_id: str, user_id: str) -> dict[str, Any]:
    c = executions.c
    recent = conn.execute(
        select(c.started_at, c.finished_at)
        .where(
            c.workspace_id == workspace_id,
            c.created_by == user_id,
            c.finished_at.is_not(None),
        )
        .order_by(c.created_at.desc())
        .limit(USER_WINDOW)
    ).all()
    summary = durations_summary([(r.started_at, r.finished_at) for r in recent])
    return {"p50_ms": summary["p50_ms"], "p95_ms": summary["p95_ms"]}


def list_stats(conn: Connection, f: ExecutionFilter) -> dict[str, Any]:
    """The stats block of an execution list: counts by status for the filter (from the
    counters when the filter is just a workspace or a workflow), and durations over its most
    recent ``WINDOW`` finished executions."""
    counts = _counts_by_status(conn, f)
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


def counts(conn: Connection, f: ExecutionFilter) -> dict[str, Any]:
    """Counts by status for a filter, and no durations: what a live monitor re-reads."""
    by_status = {s: n for s, n in _counts_by_status(conn, f).items() if n}
    return {
        "total": sum(by_status.values()),
        "live": sum(n for s, n in by_status.items() if s in _LIVE),
        "by_status": by_status,
    }


def _counts_by_status(conn: Connection, f: ExecutionFilter) -> dict[str, int]:
    if _simple(f):
        return _counted(conn, f)
    query = filtered(select(executions.c.status, func.count()), f).group_by(executions.c.status)
    return {str(status): int(n) for status, n in conn.execute(query).all()}


def _simple(f: ExecutionFilter) -> bool:
    """A filter the counters answer: the workspace, or one workflow of it."""
    return not (
        f.status
        or f.trigger_type
        or f.trigger_id
        or f.created_by
        or f.created_after
        or f.created_before
        or f.error_contains
        or f.search
    )


# -- over a time range -----------------------------------------------------------------------


@dataclass(frozen=True)
class TimeRange:
    """``[start, end)`` cut into buckets of ``unit`` (minute, hour or day)."""

    start: datetime
    end: datetime
    unit: str

    @property
    def count(self) -> int:
        """How many buckets (counted, not built: a range may be centuries long)."""
        return math.ceil((self.end - truncate(self.start, self.unit)) / BUCKETS[self.unit])

    @property
    def buckets(self) -> list[datetime]:
        first = truncate(self.start, self.unit)
        return [first + i * BUCKETS[self.unit] for i in range(self.count)]


def truncate(moment: datetime, unit: str) -> datetime:
    moment = moment.astimezone(UTC)
    if unit == "minute":
        return moment.replace(second=0, microsecond=0)
    if unit == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def time_range(start: datetime, end: datetime, unit: str | None = None) -> TimeRange:
    """The range with the finest unit that keeps it within ``MAX_BUCKETS`` buckets, or the
    given unit if it does (else an InputError saying which would)."""
    if end <= start:
        raise InputError("the range is empty: 'from' must be before 'to'")
    fits = [u for u in BUCKETS if TimeRange(start, end, u).count <= MAX_BUCKETS]
    if unit is None:
        if not fits:
            raise InputError(f"a range covers at most {MAX_BUCKETS} days")
        unit = fits[0]
    elif unit not in fits:
        hint = f"; use '{fits[0]}' or shorten the range" if fits else ""
        raise InputError(
            f"{TimeRange(start, end, unit).count} buckets of a {unit} are more than "
            f"{MAX_BUCKETS}{hint}"
        )
    return TimeRange(start, end, unit)


def timeseries(
    conn: Connection, dialect: StoreDialect, f: ExecutionFilter, span: TimeRange
) -> list[dict[str, Any]]:
    """Per bucket of the range (every bucket, empty ones too): executions created, how many
    succeeded, failed (failed or timed out) and were cancelled, and duration p50/p95."""
    f = replace(f, created_after=span.start, created_before=span.end)
    bucket = dialect.time_bucket(executions.c.created_at, span.unit)
    found = {row["key"]: row for row in _grouped(conn, dialect, f, bucket, usage=False)}
    empty = {"executions": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    series = []
    for start in span.buckets:
        row = found.get(start)
        series.append(
            {"start": start, **(_counts_of(row) if row else empty)}
            | {"p50_ms": row["p50_ms"] if row else None, "p95_ms": row["p95_ms"] if row else None}
        )
    return series


def workflow_range_stats(
    conn: Connection, dialect: StoreDialect, f: ExecutionFilter
) -> list[dict[str, Any]]:
    """Per workflow with executions created in the filter's range, most executions first."""
    names = dict(
        conn.execute(
            select(workflows.c.id, workflows.c.name).where(
                workflows.c.workspace_id == f.workspace_id
            )
        ).all()
    )
    rows = _grouped(conn, dialect, f, executions.c.workflow_id, usage=True)
    return sorted(
        (
            {"workflow_id": r["key"], "workflow_name": names.get(r["key"], ""), **_summary(r)}
            for r in rows
        ),
        key=lambda r: (-r["executions"], r["workflow_name"]),
    )


def user_range_stats(
    conn: Connection, dialect: StoreDialect, f: ExecutionFilter
) -> list[dict[str, Any]]:
    """Per user who started executions created in the filter's range, most first."""
    rows = [
        r
        for r in _grouped(conn, dialect, f, executions.c.created_by, usage=True)
        if r["key"] is not None
    ]
    people = _people(conn, [r["key"] for r in rows])
    return sorted(
        ({"user_id": r["key"], **people.get(r["key"], _NOBODY), **_summary(r)} for r in rows),
        key=lambda r: (-r["executions"], r["user_id"]),
    )


_NOBODY = {"email": None, "name": None}


def _people(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    rows = conn.execute(select(users.c.id, users.c.email, users.c.name).where(users.c.id.in_(ids)))
    return {r.id: {"email": r.email, "name": r.name} for r in rows}


def _counts_of(row: dict[str, Any]) -> dict[str, int]:
    return {k: int(row[k]) for k in ("executions", "succeeded", "failed", "cancelled")}


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    counted = _counts_of(row)
    finished = counted["succeeded"] + counted["failed"] + counted["cancelled"]
    return {
        **counted,
        "success_rate": round(counted["succeeded"] / finished, 4) if finished else None,
        "p50_ms": row["p50_ms"],
        "p95_ms": row["p95_ms"],
        "tokens": int(row["tokens"] or 0),
        "api_calls": int(row["api_calls"] or 0),
        "last_executed_at": row["last"],
    }


def _grouped(
    conn: Connection,
    dialect: StoreDialect,
    f: ExecutionFilter,
    key: ColumnElement[Any],
    *,
    usage: bool,
) -> list[dict[str, Any]]:
    """Counts, usage and duration percentiles of the filter's executions grouped by
    ``key``: one aggregate over the index range, plus (SQLite) one bounded sample."""
    c = executions.c
    duration = dialect.duration_ms(c.started_at, c.finished_at)
    columns: list[Any] = [
        key.label("key"),
        _raw(key).label("raw"),
        func.count().label("executions"),
        _tally(c.status == "succeeded", "succeeded"),
        _tally(c.status.in_(["failed", "timed_out"]), "failed"),
        _tally(c.status == "cancelled", "cancelled"),
        func.max(c.finished_at).label("last"),
    ]
    if usage:
        columns += [
            func.sum(c.usage_tokens).label("tokens"),
            func.sum(c.usage_api_calls).label("api_calls"),
        ]
    percentiles = dialect.percentiles(duration, _FRACTIONS)
    rows = [
        dict(r)
        for r in conn.execute(
            filtered(select(*columns, *(percentiles or [])), f).group_by(key)
        ).mappings()
    ]
    if percentiles is None:
        finished = sum(r["succeeded"] + r["failed"] + r["cancelled"] for r in rows)
        sampled = _sampled(conn, dialect, f, key, duration, finished)
        for row in rows:
            values = sorted(sampled.get(row["raw"], []))
            row["p50"], row["p95"] = (interpolated(values, q) for q in _FRACTIONS)
    for row in rows:
        row["p50_ms"], row["p95_ms"] = (_rounded(row.pop(n)) for n in ("p50", "p95"))
    return rows


def _raw(key: ColumnElement[Any]) -> ColumnElement[Any]:
    """The group key as the database gives it: matching a sample's durations to their
    group needs no conversion of each row's key (a time bucket is parsed once per group)."""
    return type_coerce(key, Text())


def _tally(condition: ColumnElement[bool], name: str) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0).label(name)


def _sampled(
    conn: Connection,
    dialect: StoreDialect,
    f: ExecutionFilter,
    key: ColumnElement[Any],
    duration: Any,
    finished: int,
) -> dict[Any, list[float]]:
    """Durations of the filter's finished executions, per group: all of them up to
    ``SAMPLE``, else an even sample of about ``SAMPLE`` (every n-th, in creation order),
    so every part of the range is represented."""
    c = executions.c
    query = filtered(select(_raw(key).label("key"), duration.label("ms")), f).where(
        c.finished_at.is_not(None), c.started_at.is_not(None)
    )
    if finished > SAMPLE:
        query = query.where(dialect.sample_every(math.ceil(finished / SAMPLE)))
    found: dict[Any, list[float]] = defaultdict(list)
    for group, ms in conn.execute(query).all():
        found[group].append(float(ms))
    return found


def interpolated(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` percentile with linear interpolation (PostgreSQL's ``percentile_cont``)."""
    if not sorted_values:
        return None
    position = q * (len(sorted_values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def _rounded(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)
