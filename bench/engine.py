"""Engine throughput benchmark: enqueue N executions of a 5-step workflow, then run them.

Run from the repository root with the project's virtualenv active::

    python bench/engine.py                      # 1,000 executions, SQLite and PostgreSQL
    python bench/engine.py --executions 200 --concurrency 8 --backends sqlite
    python bench/engine.py --profile            # needs pyinstrument installed

Everything runs in this process: one ``Conveyor`` (the same commands the CLI and API use)
and one ``Worker`` serving with ``concurrency`` slots. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy import func, select

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.engine.state import TERMINAL
from conveyor.nodes.builtin import build_registry
from conveyor.store.tables import executions, steps
from conveyor.worker import Worker

PG_ADMIN_URL = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = "conveyor_bench"
WORKFLOW = "bench-chain"
NODES = 5
POLL_SECONDS = 0.05  # how often the benchmark checks for completion
STALL_SECONDS = 120.0  # fail if no execution finishes for this long
BACKENDS = ("sqlite", "postgres")


class BenchError(Exception):
    """The benchmark could not produce a valid measurement."""


def definition() -> dict[str, Any]:
    """n1 -> n2 -> ... -> n5, each a transform whose output is built from its predecessor's."""
    nodes: list[dict[str, Any]] = [
        {
            "id": "n1",
            "type": "transform",
            "config": {"output": {"value": "{{ input.seed }}", "trail": "n1"}},
        }
    ]
    for i in range(2, NODES + 1):
        prev = f"n{i - 1}"
        nodes.append(
            {
                "id": f"n{i}",
                "type": "transform",
                "needs": [prev],
                "config": {
                    "output": {
                        "value": f"{{{{ nodes.{prev}.output.value + 1 }}}}",
                        "trail": f"{{{{ nodes.{prev}.output.trail }}}}-n{i}",
                    }
                },
            }
        )
    return {"name": WORKFLOW, "description": "engine benchmark chain", "nodes": nodes}


def expected_result(seed: int) -> dict[str, Any]:
    return {
        f"n{NODES}": {
            "value": seed + NODES - 1,
            "trail": "-".join(f"n{i}" for i in range(1, NODES + 1)),
        }
    }


@dataclass
class Measurement:
    backend: str
    executions: int
    steps: int
    enqueue_seconds: float
    run_seconds: float

    @property
    def enqueue_rate(self) -> float:
        return self.executions / self.enqueue_seconds

    @property
    def execution_rate(self) -> float:
        return self.executions / self.run_seconds

    @property
    def step_rate(self) -> float:
        return self.steps / self.run_seconds


# -- databases -----------------------------------------------------------------------------


def postgres_unavailable() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {detail}"


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _pg_version() -> str:
    with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


@asynccontextmanager
async def database(backend: str) -> AsyncIterator[str]:
    """A fresh, empty database URL for ``backend``; removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as folder:
            yield f"sqlite:///{os.path.join(folder, 'bench.db')}"
        return
    _pg_admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    _pg_admin(f"CREATE DATABASE {PG_DATABASE}")
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{PG_DATABASE}"
    finally:
        _pg_admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


# -- the benchmark ------------------------------------------------------------------------


def _count_terminal(app: Conveyor) -> int:
    query = (
        select(func.count())
        .select_from(executions)
        .where(executions.c.status.in_([s.value for s in TERMINAL]))
    )
    with app.store.db.read() as conn:
        return int(conn.execute(query).scalar_one())


async def enqueue(app: Conveyor, n: int) -> float:
    start = time.perf_counter()
    for seed in range(n):
        enqueued = await app.execute(WORKFLOW, {"seed": seed})
        if not enqueued.created:
            raise BenchError(f"enqueue {seed} returned an existing execution")
    return time.perf_counter() - start


async def run_all(app: Conveyor, n: int, concurrency: int) -> float:
    """Serve with one worker until ``n`` executions are terminal; return the elapsed time."""
    worker = Worker(
        app.store,
        app.registry,
        SystemClock(),
        concurrency=concurrency,
        poll=timedelta(milliseconds=50),
    )
    stop = asyncio.Event()
    start = time.perf_counter()
    serving = asyncio.create_task(worker.serve(stop), name="bench-worker")
    try:
        done, last, last_change = 0, -1, time.perf_counter()
        while done < n:
            await asyncio.sleep(POLL_SECONDS)
            if serving.done():
                serving.result()  # re-raises a crash
                raise BenchError("the worker stopped before every execution finished")
            # The count runs off the event loop so it never stalls the worker it watches.
            done = await asyncio.to_thread(_count_terminal, app)
            now = time.perf_counter()
            if done != last:
                last, last_change = done, now
            elif now - last_change > STALL_SECONDS:
                raise BenchError(
                    f"no progress for {STALL_SECONDS:.0f}s: {done}/{n} executions terminal"
                )
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        await serving
    return elapsed


def verify(app: Conveyor, n: int) -> int:
    """Every execution succeeded with the expected result; return the number of steps run."""
    with app.store.db.read() as conn:
        by_status = dict(
            conn.execute(
                select(executions.c.status, func.count()).group_by(executions.c.status)
            ).all()
        )
        rows = conn.execute(
            select(
                executions.c.id,
                executions.c.input,
                executions.c.result,
                executions.c.error,
                executions.c.steps_succeeded,
            ).where(executions.c.status == "succeeded")
        ).all()
        step_status = dict(
            conn.execute(select(steps.c.status, func.count()).group_by(steps.c.status)).all()
        )
    if by_status != {"succeeded": n}:
        with app.store.db.read() as conn:
            sample = conn.execute(
                select(executions.c.id, executions.c.status, executions.c.error)
                .where(executions.c.status != "succeeded")
                .limit(1)
            ).first()
        raise BenchError(
            f"expected {n} succeeded executions, found {by_status}; e.g. {sample and tuple(sample)}"
        )
    wrong = [
        r.id
        for r in rows
        if r.result != expected_result(r.input["seed"]) or r.steps_succeeded != NODES
    ]
    if wrong:
        raise BenchError(f"{len(wrong)} executions have a wrong result, e.g. {wrong[0]}")
    if step_status != {"succeeded": n * NODES}:
        raise BenchError(f"expected {n * NODES} succeeded steps, found {step_status}")
    return n * NODES


async def bench_backend(
    backend: str, url: str, n: int, concurrency: int, profiler: Any | None
) -> Measurement:
    app = await Conveyor.open(url, build_registry())
    try:
        await app.apply(definition())
        if profiler is not None:
            profiler.start()
        try:
            enqueue_seconds = await enqueue(app, n)
            run_seconds = await run_all(app, n, concurrency)
        finally:
            if profiler is not None:
                profiler.stop()
        step_count = verify(app, n)
    finally:
        app.close()
    return Measurement(backend, n, step_count, enqueue_seconds, run_seconds)


# -- output -------------------------------------------------------------------------------


def environment(backends: list[str]) -> str:
    parts = [
        f"python {platform.python_version()}",
        f"{platform.system()} {platform.machine()}",
        f"{os.cpu_count()} cpus",
    ]
    if "sqlite" in backends:
        parts.append(f"sqlite {sqlite3.sqlite_version}")
    if "postgres" in backends:
        parts.append(f"postgresql {_pg_version()}")
    return ", ".join(parts)


def table(results: list[Measurement]) -> str:
    columns: list[tuple[str, Callable[[Measurement], str]]] = [
        ("backend", lambda m: m.backend),
        ("executions", lambda m: f"{m.executions:,}"),
        ("steps", lambda m: f"{m.steps:,}"),
        ("enqueue s", lambda m: f"{m.enqueue_seconds:.2f}"),
        ("run s", lambda m: f"{m.run_seconds:.2f}"),
        ("enqueue/s", lambda m: f"{m.enqueue_rate:,.0f}"),
        ("executions/s", lambda m: f"{m.execution_rate:,.1f}"),
        ("steps/s", lambda m: f"{m.step_rate:,.0f}"),
    ]
    cells = [[fmt(m) for _, fmt in columns] for m in results]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, (h, _) in enumerate(columns)]

    def line(values: list[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":" if i else ":" + "-" * (w + 1)) for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line([h for h, _ in columns]), rule, *(line(row) for row in cells)])


def make_profiler(enabled: bool) -> Any | None:
    if not enabled:
        return None
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("--profile: pyinstrument is not installed (pip install pyinstrument); skipping")
        return None
    return Profiler(async_mode="enabled")


def print_profile(profiler: Any, backend: str, lines: int = 80) -> None:
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    shown = text.splitlines()
    print(f"\n-- profile ({backend}; event-loop thread only, DB calls run on worker threads) --")
    print("\n".join(shown[:lines]))
    if len(shown) > lines:
        print(f"... ({len(shown) - lines} more lines)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executions", type=int, default=1000, metavar="N")
    parser.add_argument("--concurrency", type=int, default=16, metavar="C")
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated: sqlite,postgres (default: both)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile each backend with pyinstrument"
    )
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown or not args.backends:
        parser.error(f"--backends: choose from {','.join(BACKENDS)} (got {args.backends})")
    if args.executions < 1 or args.concurrency < 1:
        parser.error("--executions and --concurrency must be at least 1")
    return args


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    backends = list(args.backends)
    if "postgres" in backends:
        reason = postgres_unavailable()
        if reason is not None:
            print(f"skipping postgres: {reason}")
            backends.remove("postgres")
    if not backends:
        print("no backend to benchmark")
        return 1
    print(
        f"{args.executions:,} executions x {NODES} transform steps, "
        f"1 worker, concurrency {args.concurrency}; {environment(backends)}"
    )
    results: list[Measurement] = []
    for backend in backends:
        profiler = make_profiler(args.profile)
        async with database(backend) as url:
            result = await bench_backend(backend, url, args.executions, args.concurrency, profiler)
        results.append(result)
        print(
            f"{backend}: enqueued in {result.enqueue_seconds:.2f}s, "
            f"ran in {result.run_seconds:.2f}s, all succeeded",
            flush=True,
        )
        if profiler is not None:
            print_profile(profiler, backend)
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        sys.exit(2)
