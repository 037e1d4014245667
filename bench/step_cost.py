"""Per-step cost: what a sequential step costs between "the previous step's node returned"
and "the next step's node starts", measured on one flow of N steps that each burn CPU.

Run from the repository root with the project's virtualenv active::

    python bench/step_cost.py                            # both backends, both modes
    python bench/step_cost.py --mode process --backends postgres --flows 5

``inproc``: one ``Conveyor`` and one ``Worker`` in this process (completion seen through
the store's own event fan-out). ``process``: one real ``conveyor worker`` process (this
module is its plugin); completion seen by polling the execution's status every 1 ms.
``ab`` (PostgreSQL): the one-statement writes against the usual transactions, A/B in one
run: two databases, each with its worker process (one started with STEP_COST_USUAL=1),
flows alternating between them; then single ``execute`` calls alternating between the
one-statement enqueue and the usual one (its remembered versions cleared), beside a bare
one-row INSERT in autocommit (the floor: one round trip and one WAL flush)::

    python bench/step_cost.py --modes ab --backends postgres --flows 10

Each step's node records ``time.perf_counter()`` (CLOCK_MONOTONIC, one clock for every
process on Linux) when it starts and returns, so the gap between two steps is measured
exactly, apart from the flow's total (submit to completion seen). Printed per flow:
total seconds, mean and p50 gap per step, and the total's overhead per step
((total - steps x burn) / steps, the W5 figure).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from conveyor.nodes.base import NodeContext, node

PG = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HERE = Path(__file__).resolve().parent
FINISHED = ("execution.succeeded", "execution.failed", "execution.cancelled", "execution.timed_out")
SUBMITTED = {
    "name": "submitted",
    "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
}
BURN_SECONDS = float(os.environ.get("STEP_COST_BURN_MS", "10")) / 1000


if os.environ.get("STEP_COST_USUAL"):  # the A arm of --modes ab: the usual transactions
    from conveyor.store import transitions

    transitions.in_one_statement = lambda dialect, pairs: False


def _burn() -> dict[str, float]:
    t0 = time.perf_counter()
    end = t0 + BURN_SECONDS
    while time.perf_counter() < end:
        pass
    return {"t0": t0, "t1": time.perf_counter()}


@node("bench.burn", description="Burn CPU for STEP_COST_BURN_MS (sync: a worker thread)")
def burn(ctx: NodeContext, config: Any) -> dict[str, float]:
    return _burn()


@node("bench.burn_async", description="Burn CPU for STEP_COST_BURN_MS on the event loop")
async def burn_async(ctx: NodeContext, config: Any) -> dict[str, float]:
    return _burn()


def flow(steps: int, kind: str) -> dict[str, Any]:
    node_type = "bench.burn" if kind == "sync" else "bench.burn_async"
    nodes: list[dict[str, Any]] = [{"id": "s1", "type": node_type}]
    for i in range(2, steps + 1):
        nodes.append({"id": f"s{i}", "type": node_type, "needs": [f"s{i - 1}"]})
    return {"name": f"step-cost-{kind}", "nodes": nodes}


def fresh(backend: str, folder: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}", None
    import psycopg

    name = f"step_cost_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    return PG.rsplit("/", 1)[0] + f"/{name}", name


def drop(name: str | None) -> None:
    if name is not None:
        import psycopg

        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[arg-type]


class Probe:
    """A plain driver connection for polling a status (outside Conveyor)."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            self.conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self.mark = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)
            self.mark = "%s"

    def status(self, execution_id: str) -> str:
        sql = f"SELECT status FROM executions WHERE id = {self.mark}"
        return str(self.conn.execute(sql, (execution_id,)).fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def gaps_of(result: dict[str, Any], steps: int) -> list[float]:
    times = [result[f"s{i}"] for i in range(1, steps + 1)] if f"s{steps}" in result else []
    return [b["t0"] - a["t1"] for a, b in itertools.pairwise(times)]


async def outputs(app: Any, execution_id: str, steps: int) -> dict[str, Any]:
    got = await app.store.get_execution(app.workspace_id, execution_id)
    return {s["node_id"]: s["output"] for s in got["steps"] if s["status"] == "succeeded"}


async def run_inproc(
    url: str, steps: int, kind: str, flows: int
) -> list[tuple[float, list[float]]]:
    from conveyor.app import Conveyor
    from conveyor.engine.interfaces import SystemClock
    from conveyor.nodes.builtin import build_registry
    from conveyor.worker import Worker

    registry = build_registry()
    registry.register(burn)
    registry.register(burn_async)
    app = await Conveyor.open(url, registry)
    definition = flow(steps, kind)
    await app.apply(definition)
    worker = Worker(app.store, registry, SystemClock(), concurrency=4, poll=timedelta(seconds=1))
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    done: dict[str, asyncio.Future[None]] = {}

    def on_records(records: list[Any]) -> None:
        for r in records:
            waiter = done.get(r.execution_id)
            if waiter is not None and r.type in FINISHED and not waiter.done():
                waiter.set_result(None)

    app.store.listeners.append(on_records)
    results = []
    try:
        for i in range(flows + 1):  # the first warms caches up, not counted
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            enqueued = await app.execute(definition["name"], {"n": i})
            waiter = done.setdefault(enqueued.execution_id, loop.create_future())
            await waiter
            total = time.perf_counter() - started
            if i:
                result = await outputs(app, enqueued.execution_id, steps)
                results.append((total, gaps_of(result, steps)))
    finally:
        stop.set()
        await serving
        app.close()
    return results


class WorkerProcess:
    """One ``conveyor worker`` process with this module as its plugin."""

    def __init__(self, url: str, log: Path, **env: str) -> None:
        self.log = log
        environ = {**os.environ, "CONVEYOR_DATABASE_URL": url, "PYTHONPATH": str(HERE), **env}
        command = [sys.executable, "-c", "from conveyor.cli.main import main; main()", "worker"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "--plugin", "step_cost", "--concurrency", "4"],
                env=environ,
                cwd=HERE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


async def open_app(url: str, steps: int, kind: str) -> tuple[Any, dict[str, Any]]:
    from conveyor.app import Conveyor
    from conveyor.nodes.builtin import build_registry

    registry = build_registry()
    registry.register(burn)
    registry.register(burn_async)
    app = await Conveyor.open(url, registry)
    definition = flow(steps, kind)
    await app.apply(definition)
    return app, definition


async def one_flow(
    app: Any, probe: Probe, worker: WorkerProcess, workflow: str, n: int
) -> tuple[float, str]:
    """Submit, then poll the status every 1 ms until it is final: (seconds, execution id)."""
    started = time.perf_counter()
    enqueued = await app.execute(workflow, {"n": n})
    while "execution." + probe.status(enqueued.execution_id) not in FINISHED:
        worker.check()
        await asyncio.sleep(0.001)
    return time.perf_counter() - started, enqueued.execution_id


async def run_process(
    url: str, steps: int, kind: str, flows: int, log: Path
) -> list[tuple[float, list[float]]]:
    app, definition = await open_app(url, steps, kind)
    worker = WorkerProcess(url, log)
    probe = Probe(url)
    results = []
    try:
        for i in range(flows + 2):  # two to warm up (imports, LISTEN), not counted
            total, execution_id = await one_flow(app, probe, worker, definition["name"], i)
            if i >= 2:
                result = await outputs(app, execution_id, steps)
                results.append((total, gaps_of(result, steps)))
            else:
                await asyncio.sleep(0.5)
    finally:
        probe.close()
        worker.stop()
        app.close()
    return results


async def run_ab(folder: Path, steps: int, kind: str, flows: int, executes: int) -> None:
    """See the module's docstring (``ab``)."""
    arms: dict[str, tuple[str | None, Any, WorkerProcess, Probe]] = {}
    results: dict[str, list[tuple[float, list[float]]]] = {"usual": [], "one statement": []}
    try:
        for arm in results:
            url, name = fresh("postgres", folder)
            app, definition = await open_app(url, steps, kind)
            env = {"STEP_COST_USUAL": "1"} if arm == "usual" else {}
            worker = WorkerProcess(url, folder / f"{len(arms)}.log", **env)
            arms[arm] = (name, app, worker, Probe(url))
        for i in range(flows + 2):
            for arm, (_, app, worker, probe) in arms.items():
                total, execution_id = await one_flow(app, probe, worker, definition["name"], i)
                if i >= 2:
                    result = await outputs(app, execution_id, steps)
                    results[arm].append((total, gaps_of(result, steps)))
        for arm, measured in results.items():
            report(f"postgres process {arm}", measured, steps)
        _, app, worker, probe = arms["one statement"]
        worker.stop()  # no worker while submitting
        await app.apply(SUBMITTED)
        probe.conn.execute("CREATE TABLE step_cost_floor (id serial PRIMARY KEY, n integer)")
        seconds: dict[str, list[float]] = {"floor": [], "usual": [], "one statement": []}
        for i in range(executes):
            started = time.perf_counter()
            probe.conn.execute("INSERT INTO step_cost_floor (n) VALUES (%s)", (i,))
            seconds["floor"].append(time.perf_counter() - started)
            for arm in ("usual", "one statement"):
                if arm == "usual":
                    app.store._versions.clear()
                started = time.perf_counter()
                await app.execute("submitted", {"n": i}, idempotency_key=f"{arm}-{i}")
                seconds[arm].append(time.perf_counter() - started)
        for arm, values in seconds.items():
            ms = sorted(1000 * v for v in values)
            print(
                f"postgres execute {arm:14} p50 {statistics.median(ms):5.2f} ms"
                f"  p90 {ms[int(len(ms) * 0.9)]:5.2f} ms",
                flush=True,
            )
    finally:
        for name, app, worker, probe in arms.values():
            worker.stop()
            probe.close()
            app.close()
            drop(name)


def report(label: str, results: list[tuple[float, list[float]]], steps: int) -> None:
    totals = [t for t, _ in results]
    gaps = [g for _, gs in results for g in gs]
    total = statistics.median(totals)
    overhead = 1000 * (total - steps * BURN_SECONDS) / steps
    mean, p50 = 1000 * statistics.fmean(gaps), 1000 * statistics.median(gaps)
    print(
        f"{label:28} flow p50 {total:6.3f} s  overhead/step {overhead:5.2f} ms"
        f"  gap mean {mean:5.2f} ms  p50 {p50:5.2f}  max {1000 * max(gaps):5.2f}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--modes", nargs="+", default=["inproc", "process"])
    parser.add_argument("--kind", choices=["sync", "async"], default="sync")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--flows", type=int, default=5)
    parser.add_argument("--executes", type=int, default=500, help="per arm, with --modes ab")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="step-cost-") as folder:
        for backend in args.backends:
            for mode in args.modes:
                if mode == "ab":
                    if backend == "postgres":
                        await run_ab(Path(folder), args.steps, args.kind, args.flows, args.executes)
                    continue
                url, name = fresh(backend, Path(folder))
                try:
                    if mode == "inproc":
                        results = await run_inproc(url, args.steps, args.kind, args.flows)
                    else:
                        log = Path(folder) / "worker.log"
                        results = await run_process(url, args.steps, args.kind, args.flows, log)
                finally:
                    drop(name)
                report(f"{backend} {mode} {args.kind}", results, args.steps)


if __name__ == "__main__":
    asyncio.run(main())
