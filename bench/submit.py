"""Submit benchmark: how fast one client enqueues executions through the Python API, one
``Conveyor.execute`` at a time and in batches with ``Conveyor.execute_many``, on SQLite and
PostgreSQL (every enqueue durable, each with its own idempotency key; no worker runs).

Run from the repository root with the project's virtualenv active::

    python bench/submit.py                       # 2000 executions, both backends
    python bench/submit.py --count 5000 --batch 1000 --backends postgres

Prints executions/s for each way and their ratio, measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from conveyor import Submission
from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry

FLOW = {
    "name": "submitted",
    "nodes": [{"id": "a", "type": "transform", "config": {"output": "{{ input.n }}"}}],
}
PG = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def fresh(backend: str, folder: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}", None
    name = f"bench_submit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return PG.rsplit("/", 1)[0] + f"/{name}", name


def drop(name: str | None) -> None:
    if name is not None:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def one_at_a_time(app: Conveyor, count: int) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        await app.execute("submitted", {"n": i}, idempotency_key=f"one-{i}")
        latencies.append(time.perf_counter() - t)
    return count / (time.perf_counter() - started), latencies


async def batched(app: Conveyor, count: int, batch: int) -> float:
    started = time.perf_counter()
    for first in range(0, count, batch):
        items = [
            Submission({"n": i}, idempotency_key=f"many-{i}")
            for i in range(first, min(first + batch, count))
        ]
        results = await app.execute_many("submitted", items)
        assert not any(isinstance(r, Exception) for r in results), results
    return count / (time.perf_counter() - started)


async def measure(backend: str, count: int, batch: int, folder: Path) -> dict[str, float]:
    url, name = fresh(backend, folder)
    try:
        app = await Conveyor.open(url, build_registry())
        try:
            await app.apply(FLOW)
            single, latencies = await one_at_a_time(app, count)
            many = await batched(app, count, batch)
        finally:
            app.close()
    finally:
        drop(name)
    return {
        "single_per_s": single,
        "single_p50_ms": statistics.median(latencies) * 1000,
        "batched_per_s": many,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            r = asyncio.run(measure(backend, args.count, args.batch, Path(folder)))
            print(
                f"{backend:9} execute: {r['single_per_s']:7.0f}/s (p50 {r['single_p50_ms']:.2f} ms)"
                f"   execute_many (batches of {args.batch}): {r['batched_per_s']:7.0f}/s"
                f"   ratio {r['batched_per_s'] / r['single_per_s']:.1f}x"
            )


if __name__ == "__main__":
    main()
