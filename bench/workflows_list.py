"""The workflows list at scale: one page of the dashboard's workflows list (last execution,
success rate, executions in the last 24 hours) over 100,000 executions, on both backends.

    python bench/workflows_list.py [--executions 100000] [--workflows 20] [--repeat 9]

Fills a fresh SQLite file and a fresh PostgreSQL database (``conveyor_bench_wflist``) with
executions spread over the last 48 hours (so half of them fall in the 24-hour count, the
expensive case), sets the finishing-transaction counters from them, then times the page
query (median of ``--repeat``) and prints its plan. The target is under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event, insert, text, update

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.store import workflows as store
from conveyor.store.tables import executions, workflows

ADMIN = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DB = "conveyor_bench_wflist"
STATUSES = ["succeeded"] * 45 + ["failed"] * 4 + ["cancelled"]


def fill(app: Conveyor, refs: list[Any], n: int, vacuum: bool) -> None:
    """Executions round-robin over the workflows, one every ``48 h / n``; counters set as
    the finishing transactions would have set them."""
    now = app.store.clock.now()
    step = timedelta(hours=48) / n
    rows = []
    counts: dict[str, dict[str, int]] = {r.workflow_id: {} for r in refs}
    for i in range(n):
        ref = refs[i % len(refs)]
        created = now - timedelta(hours=48) + step * i
        status = STATUSES[i % len(STATUSES)]
        rows.append(
            {
                "id": f"{i:032x}",
                "workspace_id": app.workspace_id,
                "workflow_id": ref.workflow_id,
                "version_id": ref.version_id,
                "status": status,
                "trigger_type": "manual",
                "available_at": created,
                "created_at": created,
                "started_at": created,
                "finished_at": created + timedelta(milliseconds=80),
            }
        )
        counts[ref.workflow_id][status] = counts[ref.workflow_id].get(status, 0) + 1
    with app.store.db.write() as conn:
        for start in range(0, n, 10_000):
            conn.execute(insert(executions), rows[start : start + 10_000])
        for workflow_id, by in counts.items():
            conn.execute(
                update(workflows)
                .where(workflows.c.id == workflow_id)
                .values(
                    executions_finished=sum(by.values()),
                    executions_succeeded=by.get("succeeded", 0),
                    executions_failed=by.get("failed", 0),
                    executions_cancelled=by.get("cancelled", 0),
                )
            )
    if vacuum and app.store.db.name == "postgresql":
        with app.store.db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    else:
        with app.store.db.write() as conn:
            conn.execute(text("ANALYZE"))


async def measure(url: str, n: int, count: int, repeat: int, vacuum: bool) -> None:
    app = await Conveyor.open(url, build_registry(entry_points=False))
    try:
        nodes = [{"id": "t", "type": "transform", "config": {"output": 1}}]
        refs = [await app.apply({"name": f"wf-{k:02d}", "nodes": nodes}) for k in range(count)]
        start = time.perf_counter()
        fill(app, refs, n, vacuum)
        print(f"{app.store.db.name}: filled {n:,} executions in {time.perf_counter() - start:.1f}s")
        since = app.store.clock.now() - timedelta(hours=24)

        async def page(**extra: Any) -> list[dict[str, Any]]:
            return await app.store.read(
                store.list_page, app.workspace_id, 51, None, 0, since=since, **extra
            )

        statements: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
            statements.append((statement, params))

        event.listen(app.store.db.engine, "before_cursor_execute", capture)
        rows = await page()
        event.remove(app.store.db.engine, "before_cursor_execute", capture)
        assert len(rows) == min(count, 51)
        recent = sum(r["executions_24h"] for r in rows)
        print(f"  {recent:,} executions in the last 24 h across the page")
        for label, extra in (("page of workflows", {}), ("search q=wf-1", {"search": "wf-1"})):
            samples = []
            for _ in range(repeat):
                began = time.perf_counter()
                await page(**extra)
                samples.append((time.perf_counter() - began) * 1000)
            ms = statistics.median(samples)
            print(f"  {label:24} median {ms:7.1f} ms   {'ok' if ms < 100 else 'SLOW'}")
        print_plan(app, statements[-1])
    finally:
        app.close()


def print_plan(app: Conveyor, captured: tuple[str, Any]) -> None:
    statement, params = captured
    raw = app.store.db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if app.store.db.name == "sqlite":
            cursor.execute(f"EXPLAIN QUERY PLAN {statement}", params)
            lines = [f"{row[0]:>3} {row[1]:>3} {row[3]}" for row in cursor.fetchall()]
        else:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS OFF) {statement}", params)
            lines = [row[0] for row in cursor.fetchall()]
        print("  plan:\n    " + "\n    ".join(lines))
    finally:
        raw.close()


async def run(n: int, count: int, repeat: int, backends: list[str], vacuum: bool) -> None:
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as folder:
            await measure(f"sqlite:///{Path(folder) / 'bench.db'}", n, count, repeat, vacuum)
    if "postgres" in backends:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {DB}")
        try:
            await measure(ADMIN.rsplit("/", 1)[0] + "/" + DB, n, count, repeat, vacuum)
        finally:
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--workflows", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--vacuum",
        action="store_true",
        help="VACUUM PostgreSQL after filling (as autovacuum eventually would): counts "
        "become index-only scans; without it, recent rows are read from the heap",
    )
    args = parser.parse_args()
    backends = args.backends.split(",")
    asyncio.run(run(args.executions, args.workflows, args.repeat, backends, args.vacuum))


if __name__ == "__main__":
    main()
