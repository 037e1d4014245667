"""History at scale: the list, count, bulk and statistics queries the API and the dashboard
run, over 100,000 executions, on SQLite and on PostgreSQL.

    python bench/history.py [--executions 100000] [--repeat 5] [--backends sqlite,postgres]
                            [--plans]

Fills a fresh database with executions spread over 90 days, 10 workflows, 50 users and
realistic statuses (2 % failed, 0.5 % cancelled, 40 live, a JSON input each, an error on the
failed ones, 5 steps for each of the most recent 5,000), then times each query (median of
``--repeat``). The target is under 100 ms each. ``--plans`` prints the plan of every
statement each query runs (``EXPLAIN QUERY PLAN`` / ``EXPLAIN``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, insert, text, update

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.store import history
from conveyor.store import statistics as stats
from conveyor.store.history import ExecutionFilter, list_executions
from conveyor.store.tables import execution_inputs, executions, steps, users, workflows

ADMIN = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DB = "conveyor_bench_history"
WORKFLOWS = 10
USERS = 50
DAYS = 90
CHUNK = 5_000


def _status(i: int, n: int) -> str:
    if i > n - 20:
        return "running"
    if i > n - 40:
        return "queued"
    if i % 50 == 0:
        return "failed"
    if i % 199 == 0:
        return "cancelled"
    return "succeeded"


def _rows(i: int, n: int, ws: str, refs: list[Any], start: datetime) -> dict[str, Any]:
    created = start + timedelta(seconds=i * DAYS * 86400 / n)
    status = _status(i, n)
    ref = refs[i % WORKFLOWS]
    live = status in ("queued", "running")
    return {
        "id": f"{i:032x}",
        "workspace_id": ws,
        "workflow_id": ref.workflow_id,
        "version_id": ref.version_id,
        "status": status,
        "trigger_type": "api" if i % 3 == 0 else "manual",
        "error": {"type": "HttpStatusError", "message": "GET https://api.example.com answered 503"}
        if status == "failed"
        else None,
        "priority": 0,
        "available_at": created,
        "created_at": created,
        "started_at": None if status == "queued" else created,
        "finished_at": None if live else created + timedelta(milliseconds=50 + i * 7919 % 2000),
        "created_by": f"user{i % USERS:028d}",
        "steps_total": 5,
        "steps_succeeded": 5,
        "usage_tokens": i % 1000,
        "usage_api_calls": i % 7,
    }


def fill(app: Conveyor, refs: list[Any], n: int) -> None:
    """Plain Core inserts in chunks (the same on both backends), then the counters the
    finishing transactions would have kept."""
    db, ws = app.store.db, app.workspace_id
    start = datetime.now(UTC) - timedelta(days=DAYS)
    rng = random.Random(7)
    with db.write() as conn:
        conn.execute(
            insert(users),
            [
                {
                    "id": f"user{u:028d}",
                    "email": f"user{u}@example.com",
                    "name": f"User {u}",
                    "password_hash": "x",
                    "created_at": start,
                }
                for u in range(USERS)
            ],
        )
    for first in range(1, n + 1, CHUNK):
        batch = [_rows(i, n, ws, refs, start) for i in range(first, min(first + CHUNK, n + 1))]
        with db.write() as conn:
            conn.execute(insert(executions), batch)
            conn.execute(
                insert(execution_inputs),
                [
                    {"execution_id": r["id"], "input": {"order_id": rng.randrange(10**6)}}
                    for r in batch
                ],
            )
            recent = [r for r in batch if int(r["id"], 16) > n - 5_000]
            if recent:
                conn.execute(
                    insert(steps),
                    [
                        {
                            "execution_id": r["id"],
                            "node_id": f"n{k}",
                            "node_type": "transform",
                            "attempt": 1,
                            "status": "succeeded",
                            "output": {"k": k},
                            "started_at": r["started_at"],
                            "finished_at": r["finished_at"],
                        }
                        for r in recent
                        if r["started_at"] is not None
                        for k in range(1, 6)
                    ],
                )
    with db.write() as conn:
        _count(conn, refs)
        if db.name == "postgresql":  # as autovacuum would; Conveyor never runs it on SQLite
            conn.execute(text("ANALYZE"))


def _count(conn: Connection, refs: list[Any]) -> None:
    for ref in refs:
        rows = conn.execute(
            text("SELECT status, count(*) FROM executions WHERE workflow_id = :w GROUP BY status"),
            {"w": ref.workflow_id},
        ).all()
        by = dict(rows)
        finished = sum(v for k, v in by.items() if k not in ("queued", "running"))
        conn.execute(
            update(workflows)
            .where(workflows.c.id == ref.workflow_id)
            .values(
                executions_finished=finished,
                executions_succeeded=by.get("succeeded", 0),
                executions_failed=by.get("failed", 0),
                executions_cancelled=by.get("cancelled", 0),
                duration_total_ms=finished * 1000,
            )
        )


async def timed(repeat: int, call: Callable[[], Awaitable[Any]]) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def queries(app: Conveyor, refs: list[Any], n: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    store, ws, wf = app.store, app.workspace_id, refs[3].workflow_id
    dialect = store.db.dialect
    base = ExecutionFilter(workspace_id=ws, limit=51)
    now = datetime.now(UTC)
    week = ExecutionFilter(workspace_id=ws, created_after=now - timedelta(days=7))
    day = stats.time_range(now - timedelta(days=1), now)
    month = stats.time_range(now - timedelta(days=30), now)

    def listed(**kw: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: store.read(list_executions, replace(base, **kw))

    def counted(**kw: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: store.read(stats.counts, replace(base, **kw))

    failed = ["failed", "timed_out"]
    return {
        "list: newest 50": listed(),
        "list: status=failed": listed(status="failed"),
        "list: status=failed|timed_out": listed(status=failed),
        "list: status=running|queued": listed(status=["running", "queued"]),
        "list: one workflow": listed(workflow_id=wf),
        "list: one workflow, failed": listed(workflow_id=wf, status="failed"),
        "list: one user": listed(created_by="user" + "7".zfill(28)),
        "list: trigger api": listed(trigger_type="api"),
        "list: q=503 (error)": listed(search="503"),
        "list: q=order_id (input)": listed(search="order_id"),
        "list: q=rare text": listed(search="no-such-text"),
        "list: q=rare, last 7 days": listed(
            search="no-such-text", created_after=week.created_after
        ),
        "list stats: workspace": lambda: store.read(stats.list_stats, ExecutionFilter(ws)),
        "list stats: failed|timed_out": lambda: store.read(
            stats.list_stats, ExecutionFilter(ws, status=failed)
        ),
        "list stats: last 7 days": lambda: store.read(stats.list_stats, week),
        "counts: workspace": counted(),
        "counts: live statuses": counted(status=["queued", "running", "waiting"]),
        "counts: failed|timed_out": counted(status=failed),
        "counts: last 7 days": lambda: store.read(stats.counts, week),
        "bulk dry run: retry failed": lambda: store.read(
            history.count_by_status, ExecutionFilter(ws, status=failed)
        ),
        "bulk batch: next 100 failed": lambda: store.read(
            history.next_batch, ExecutionFilter(ws), failed, None, 100
        ),
        "timeseries: 24 h by minute": lambda: store.read(
            stats.timeseries, dialect, ExecutionFilter(ws), day
        ),
        "timeseries: 30 days by hour": lambda: store.read(
            stats.timeseries, dialect, ExecutionFilter(ws), month
        ),
        "timeseries: 30 days, one workflow": lambda: store.read(
            stats.timeseries, dialect, ExecutionFilter(ws, workflow_id=wf), month
        ),
        "workflow stats: 7 days": lambda: store.read(stats.workflow_range_stats, dialect, week),
        "workflow stats: 90 days": lambda: store.read(
            stats.workflow_range_stats,
            dialect,
            ExecutionFilter(ws, created_after=now - timedelta(days=90)),
        ),
        "user stats: all time": lambda: store.read(stats.user_stats, ws),
        "user stats: 7 days": lambda: store.read(stats.user_range_stats, dialect, week),
        "execution detail (summary)": lambda: store.get_execution(
            ws, f"{n - 50:032x}", max_payload_bytes=65536
        ),
    }


async def plans(app: Conveyor, name: str, call: Callable[[], Awaitable[Any]]) -> None:
    """Print the plan of each statement ``call`` runs."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    engine = app.store.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    prefix = "EXPLAIN QUERY PLAN " if app.store.db.name == "sqlite" else "EXPLAIN "
    print(f"\n== {name}")
    with engine.connect() as conn:
        for statement, params in seen:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cursor = raw.cursor()
            cursor.execute(prefix + statement, params)
            for row in cursor.fetchall():
                print("   ", row[-1] if app.store.db.name == "sqlite" else row[0])
            print("    --")


async def run(backend: str, n: int, repeat: int, show_plans: bool) -> None:
    if backend == "sqlite":
        folder = tempfile.mkdtemp()
        url = f"sqlite:///{Path(folder) / 'history.db'}"
    else:
        import psycopg

        url = ADMIN.rsplit("/", 1)[0] + "/" + DB
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {DB}")
    app = await Conveyor.open(url, build_registry())
    try:
        nodes = [{"id": f"n{j}", "type": "transform", "config": {"output": j}} for j in range(1, 6)]
        refs = [await app.apply({"name": f"wf-{k}", "nodes": nodes}) for k in range(WORKFLOWS)]
        start = time.perf_counter()
        fill(app, refs, n)
        print(f"\n{backend}: filled {n:,} executions in {time.perf_counter() - start:.1f}s")
        print(f"{'query':36} {'median ms':>10}   (target < 100 ms)")
        for name, call in queries(app, refs, n).items():
            ms = await timed(repeat, call)
            print(f"{name:36} {ms:10.1f}   {'ok' if ms < 100 else 'SLOW'}")
        if show_plans:
            for name, call in queries(app, refs, n).items():
                await plans(app, name, call)
    finally:
        app.close()
        if backend == "postgres":
            import psycopg

            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--plans", action="store_true", help="print each statement's plan")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        asyncio.run(run(backend, args.executions, args.repeat, args.plans))


if __name__ == "__main__":
    main()
