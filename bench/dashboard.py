"""The dashboard with real data: each page's server time over 100,000 executions.

    python bench/dashboard.py [--executions 100000] [--repeat 15] [--backends sqlite,postgres]
                              [--requests]   # also count each page's requests in Chromium

Fills a fresh database (SQLite file, or PostgreSQL ``conveyor_bench_dashboard``) with
executions spread over the last 13 days (inside the default 14-day retention of successes, so
the server's retention task has nothing to prune while pages are timed), 10 workflows and
realistic statuses (3 step rows each for the most recent 2,000; workflow counters set from the
rows, as finishing transactions would), runs ANALYZE (the planner statistics autovacuum would
have gathered by then on PostgreSQL), starts a real ``conveyor server --concurrency 0``, signs
in, and times each page (median and max of ``--repeat`` GETs from this machine: server time
plus loopback). The target is under 200 ms per page; ``--requests`` loads each page in
headless Chromium and counts its requests (a handful: the page, its one stylesheet and one
script bundle, the graph or chart libraries it needs, the favicon, and its streams).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import func, insert, select, update

from conveyor.store import Database
from conveyor.store.tables import execution_inputs, executions, steps, workflows
from conveyor.store.workflows import apply_definition, workspace_id

ADMIN = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = "conveyor_bench_dashboard"
EMAIL, PASSWORD = "bench@example.com", "bench-password"
WORKFLOWS = 10
WITH_STEPS = 2_000
BATCH = 5_000
DAYS = 13


def definition(i: int) -> dict[str, Any]:
    return {
        "name": f"wf-{i}",
        "nodes": [
            {"id": "fetch", "type": "transform", "config": {"output": {"n": i}}},
            {"id": "check", "type": "condition", "needs": ["fetch"], "config": {"if": "true"}},
            {"id": "notify", "type": "notify", "needs": ["check.true"], "config": {"title": "x"}},
        ],
    }


def fill(url: str, n: int) -> None:
    db = Database(url)
    db.migrate()
    now = datetime.now(UTC)
    rng = random.Random(7)
    with db.engine.begin() as conn:
        ws = workspace_id(conn, "default", now)
        refs = [apply_definition(conn, ws, definition(i), now) for i in range(WORKFLOWS)]
    start = now - timedelta(days=DAYS)
    for first in range(0, n, BATCH):
        rows, inputs, step_rows = [], [], []
        for i in range(first, min(n, first + BATCH)):
            ref = refs[i % WORKFLOWS]
            created = start + timedelta(seconds=DAYS * 24 * 3600 * i / n)
            status = "failed" if i % 50 == 0 else "cancelled" if i % 199 == 0 else "succeeded"
            status = "running" if i > n - 20 else "queued" if i > n - 40 else status
            finished = (
                None
                if status in ("running", "queued")
                else created + timedelta(milliseconds=50 + rng.randrange(2000))
            )
            execution_id = f"{i:032x}"
            error = (
                {"type": "HttpStatusError", "message": "answered 503"}
                if status == "failed"
                else None
            )
            rows.append(
                {
                    "id": execution_id,
                    "workspace_id": ws,
                    "workflow_id": ref.workflow_id,
                    "version_id": ref.version_id,
                    "status": status,
                    "trigger_type": "api" if i % 3 == 0 else "manual",
                    "error": error,
                    "available_at": created,
                    "created_at": created,
                    "started_at": created,
                    "finished_at": finished,
                    "steps_total": 3,
                    "steps_succeeded": 3,
                    "event_seq": 8,
                    "usage_tokens": i % 1000,
                    "usage_api_calls": i % 7,
                }
            )
            inputs.append({"execution_id": execution_id, "input": {"order_id": i}})
            if i >= n - WITH_STEPS:
                for k, node in enumerate(("fetch", "check", "notify")):
                    step_rows.append(
                        {
                            "execution_id": execution_id,
                            "node_id": node,
                            "node_type": "transform",
                            "attempt": 1,
                            "step_index": k + 1,
                            "status": "succeeded",
                            "input": {"output": {"n": i}},
                            "output": {"n": i},
                            "logs": [],
                            "started_at": created,
                            "finished_at": finished or created,
                        }
                    )
        with db.engine.begin() as conn:
            conn.execute(insert(executions), rows)
            conn.execute(insert(execution_inputs), inputs)
            if step_rows:
                conn.execute(insert(steps), step_rows)
    with db.engine.begin() as conn:
        for ref in refs:
            counts = dict(
                conn.execute(
                    select(executions.c.status, func.count())
                    .where(executions.c.workflow_id == ref.workflow_id)
                    .group_by(executions.c.status)
                ).all()
            )
            finished = sum(v for k, v in counts.items() if k not in ("queued", "running"))
            conn.execute(
                update(workflows)
                .where(workflows.c.id == ref.workflow_id)
                .values(
                    executions_finished=finished,
                    executions_succeeded=counts.get("succeeded", 0),
                    executions_failed=counts.get("failed", 0),
                    executions_cancelled=counts.get("cancelled", 0),
                    duration_total_ms=finished * 1000,
                    last_executed_at=now,
                )
            )
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    db.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": url,
        "CONVEYOR_ADMIN_EMAIL": EMAIL,
        "CONVEYOR_ADMIN_PASSWORD": PASSWORD,
    }
    conveyor = str(Path(sys.executable).parent / "conveyor")
    process = subprocess.Popen(
        [conveyor, "server", "--port", str(port), "--concurrency", "0"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the server did not start:\n{log.read_text()}")


def pages(client: httpx.Client) -> list[str]:
    recent = client.get("/api/v1/workspaces/default/executions?limit=1&stats=false").json()
    execution_id = recent["items"][0]["id"]
    return [
        "/w/default/workflows",
        "/w/default/workflows/wf-3",
        "/w/default/executions",
        "/w/default/executions?status=failed",
        f"/w/default/executions/{execution_id}",
        "/w/default/statistics",
        "/w/default/settings",
    ]


def time_pages(base: str, repeat: int) -> list[tuple[str, float, float, int]]:
    results = []
    with httpx.Client(base_url=base, timeout=30) as client:
        login = client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
        login.raise_for_status()
        for path in pages(client):
            times = []
            status = 0
            for _ in range(repeat):
                began = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - began) * 1000)
                status = response.status_code
            results.append((path, statistics.median(times), max(times), status))
    return results


def count_requests(base: str, paths: list[str]) -> dict[str, int]:
    from playwright.sync_api import sync_playwright

    counts = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        context = browser.new_context(base_url=base)
        context.request.post("/api/v1/auth/login", data={"email": EMAIL, "password": PASSWORD})
        for path in paths:
            page = context.new_page()
            seen: list[str] = []
            page.on("request", lambda r, seen=seen: seen.append(r.url))
            page.goto(path)
            page.wait_for_load_state("load")
            page.wait_for_timeout(1000)  # the scripts' first API calls and streams
            counts[path] = len(seen)
            page.close()
        browser.close()
    return counts


def run(backend: str, n: int, repeat: int, requests: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "sqlite":
            url = f"sqlite:///{tmp}/bench.db"
        else:
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")  # type: ignore[arg-type]
                conn.execute(f"CREATE DATABASE {PG_DB}")  # type: ignore[arg-type]
            url = f"{ADMIN.rsplit('/', 1)[0]}/{PG_DB}"
        began = time.perf_counter()
        fill(url, n)
        print(f"\n{backend}: {n:,} executions filled in {time.perf_counter() - began:.1f} s")
        process, base = serve(url, Path(tmp) / "server.log")
        try:
            results = time_pages(base, repeat)
            counts = count_requests(base, [r[0] for r in results]) if requests else {}
        finally:
            process.terminate()
            process.wait(timeout=20)
        print(f"| page ({backend}) | status | median ms | max ms | requests on load |")
        print("|---|--:|--:|--:|--:|")
        for path, median, worst, status in results:
            print(f"| `{path}` | {status} | {median:.1f} | {worst:.1f} | {counts.get(path, '')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--requests", action="store_true")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        run(backend, args.executions, args.repeat, args.requests)


if __name__ == "__main__":
    main()
