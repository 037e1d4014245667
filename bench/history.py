"""History at scale: list and statistics queries over 1,000,000 executions in PostgreSQL.

    python bench/history.py [--executions 1000000] [--repeat 7]

Fills a fresh database (``conveyor_bench_history``) with executions spread over 90 days,
10 workflows, 50 users and realistic statuses (plus 5 step rows for each of the most recent
50,000), then times each query the API runs (median of ``--repeat``). The target is under
100 ms each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.store import statistics as stats
from conveyor.store.history import ExecutionFilter, list_executions

ADMIN = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DB = "conveyor_bench_history"
WORKFLOWS = 10
USERS = 50


def fill(
    url: str, workspace_id: str, workflow_ids: list[str], version_ids: list[str], n: int
) -> None:
    """One INSERT ... SELECT generate_series: fast, and the statistics counters are then set
    from the rows, as the finishing transactions would have."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO executions (id, workspace_id, workflow_id, version_id, status,
                trigger_type, input, result, error, priority, available_at, created_at,
                started_at, finished_at, created_by, steps_total, steps_succeeded,
                steps_failed, event_seq, usage_tokens, usage_api_calls)
            SELECT lpad(to_hex(i), 32, '0'), %(ws)s,
                   (%(wf)s::text[])[1 + i %% %(nwf)s], (%(vs)s::text[])[1 + i %% %(nwf)s],
                   CASE WHEN i %% 50 = 0 THEN 'failed' WHEN i %% 199 = 0 THEN 'cancelled'
                        WHEN i > %(n)s - 20 THEN 'running' WHEN i > %(n)s - 40 THEN 'queued'
                        ELSE 'succeeded' END,
                   CASE WHEN i %% 3 = 0 THEN 'api' ELSE 'manual' END,
                   jsonb_build_object('order_id', i), NULL,
                   CASE WHEN i %% 50 = 0 THEN jsonb_build_object('type', 'HttpStatusError',
                        'message', 'GET https://api.example.com answered 503') END,
                   0, created, created, created,
                   CASE WHEN i > %(n)s - 40 THEN NULL
                        ELSE created + (50 + (i * 7919) %% 2000) * interval '1 millisecond' END,
                   'user' || (i %% %(users)s), 5, 5, 0, 12, i %% 1000, i %% 7
            FROM (SELECT i, %(start)s::timestamptz + (i * %(span)s / %(n)s) * interval '1 second'
                         AS created FROM generate_series(1::bigint, %(n)s) AS i) AS g
        """,
            {
                "ws": workspace_id,
                "wf": workflow_ids,
                "vs": version_ids,
                "nwf": WORKFLOWS,
                "n": n,
                "users": USERS,
                "start": datetime.now(UTC) - timedelta(days=90),
                "span": 90 * 86400,
            },
        )
        conn.execute("""
            INSERT INTO steps (execution_id, node_id, node_type, attempt, status,
                               started_at, finished_at)
            SELECT e.id, 'n' || k, 'transform', 1, 'succeeded', e.started_at,
                   e.started_at + (k * 10) * interval '1 millisecond'
            FROM (SELECT id, started_at FROM executions ORDER BY created_at DESC LIMIT 50000) e,
                 generate_series(1, 5) AS k
        """)
        conn.execute("""
            UPDATE workflows w SET
              executions_finished = s.finished, executions_succeeded = s.succeeded,
              executions_failed = s.failed, executions_cancelled = s.cancelled,
              duration_total_ms = s.ms, last_executed_at = s.last
            FROM (SELECT workflow_id,
                    count(*) FILTER (WHERE finished_at IS NOT NULL) AS finished,
                    count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                    count(*) FILTER (WHERE status = 'failed') AS failed,
                    count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
                    coalesce(sum(extract(epoch FROM finished_at - started_at) * 1000), 0)::bigint
                      AS ms, max(finished_at) AS last
                  FROM executions GROUP BY workflow_id) s
            WHERE s.workflow_id = w.id
        """)
        conn.execute("""
            INSERT INTO user_usage (workspace_id, user_id, executions, tokens, api_calls)
            SELECT workspace_id, created_by, count(*), sum(usage_tokens), sum(usage_api_calls)
            FROM executions GROUP BY workspace_id, created_by
        """)
        conn.execute("VACUUM ANALYZE")


async def timed(repeat: int, call: Callable[[], Awaitable[Any]]) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def run(n: int, repeat: int, reuse: bool) -> None:
    url = ADMIN.rsplit("/", 1)[0] + "/" + DB
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone()
        if not (reuse and exists):
            admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {DB}")
    app = await Conveyor.open(url, build_registry())
    try:
        nodes = [{"id": f"n{j}", "type": "transform", "config": {"output": j}} for j in range(1, 6)]
        refs = [await app.apply({"name": f"wf-{k}", "nodes": nodes}) for k in range(WORKFLOWS)]
        if not (reuse and exists):
            start = time.perf_counter()
            fill(
                url,
                app.workspace_id,
                [r.workflow_id for r in refs],
                [r.version_id for r in refs],
                n,
            )
            print(f"filled {n:,} executions in {time.perf_counter() - start:.1f}s")
        store, ws, wf = app.store, app.workspace_id, refs[3].workflow_id
        page = await store.read(list_executions, ExecutionFilter(workspace_id=ws, limit=51))
        cursor = (page[-1]["created_at"], page[-1]["id"])
        week = datetime.now(UTC) - timedelta(days=7)
        queries: dict[str, Callable[[], Awaitable[Any]]] = {
            "list: newest 50": lambda: store.read(
                list_executions, ExecutionFilter(workspace_id=ws, limit=51)
            ),
            "list: next page (cursor)": lambda: store.read(
                list_executions, ExecutionFilter(workspace_id=ws, limit=51, cursor=cursor)
            ),
            "list: status=failed": lambda: store.read(
                list_executions, ExecutionFilter(workspace_id=ws, status="failed", limit=51)
            ),
            "list: one workflow": lambda: store.read(
                list_executions, ExecutionFilter(workspace_id=ws, workflow_id=wf, limit=51)
            ),
            "list: one user": lambda: store.read(
                list_executions, ExecutionFilter(workspace_id=ws, created_by="user7", limit=51)
            ),
            "list: error text": lambda: store.read(
                list_executions, ExecutionFilter(workspace_id=ws, error_contains="503", limit=51)
            ),
            "stats: whole workspace": lambda: store.read(
                stats.list_stats, ExecutionFilter(workspace_id=ws)
            ),
            "stats: one workflow": lambda: store.read(
                stats.list_stats, ExecutionFilter(workspace_id=ws, workflow_id=wf)
            ),
            "stats: last 7 days": lambda: store.read(
                stats.list_stats, ExecutionFilter(workspace_id=ws, created_after=week)
            ),
            "stats: failed, one workflow": lambda: store.read(
                stats.list_stats, ExecutionFilter(workspace_id=ws, workflow_id=wf, status="failed")
            ),
            "workflow stats (counters)": lambda: store.read(stats.workflow_stats, wf),
            "node stats": lambda: store.read(stats.node_stats, wf),
            "user stats": lambda: store.read(stats.user_stats, ws),
        }
        print(f"\n{'query':32} {'median ms':>10}   (target < 100 ms)")
        for name, call in queries.items():
            ms = await timed(repeat, call)
            print(f"{name:32} {ms:10.1f}   {'ok' if ms < 100 else 'SLOW'}")
    finally:
        app.close()
        if not reuse:
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--reuse", action="store_true", help="keep the filled database and reuse it on the next run"
    )
    args = parser.parse_args()
    asyncio.run(run(args.executions, args.repeat, args.reuse))


if __name__ == "__main__":
    main()
