"""DBOS peer benchmark: bench/workers.py's workloads on DBOS Transact.

Run inside bench/.venvs/dbos (bench/peers/setup.sh). Prints one JSON line.

DBOS runs workflows inside the application's processes. Here the "workers" are 2
processes (W2: 1) that call ``DBOS.launch()`` and dequeue from the queue ``bench``
(``worker_concurrency=64``, DBOS's default queue polling of 1 s); this script only
enqueues with ``DBOSClient`` and reads ``workflow_status``, as bench/workers.py does with
Conveyor's tables. Each workload run gets a fresh system database: a PostgreSQL database
``dbos_bench`` or a SQLite file, created with ``dbos migrate``.

- W1 (submit included): the 2 workers are started and print that they are set up, sit
  idle 3 s (their RSS is read), then this client enqueues 500 ``chain`` workflows of 5
  ``@DBOS.step`` no-ops one ``DBOSClient.enqueue`` at a time and waits; rate = 500 /
  (first enqueue -> ``max(updated_at)``).
- W1-drain (claim to finish, enqueued beforehand): the 500 are enqueued before the workers
  start. ``run s`` = ``max(updated_at) - min(started_at_epoch_ms)``: first dequeue to last
  finish.
- W2: 200 times enqueue ``single`` (1 step), then poll its status every ~1 ms.
- W3: 20 async ``fanout`` workflows: a root step, 50 steps run with ``asyncio.gather``, a
  join step (52 steps each), enqueued beforehand.
- W5: 1 worker; 5 times (after a warm-up) enqueue ``burn_flow`` (40 ``@DBOS.step`` busy
  loops of 10 ms, each adding its measured time to the total) and poll its status.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    CONCURRENCY,
    IDLE_SECONDS,
    READY,
    TIMEOUT,
    W1_EXECUTIONS,
    W1_STEPS,
    W2_EXECUTIONS,
    W2_WARMUP,
    W3_BRANCHES,
    W3_EXECUTIONS,
    W5_FLOWS,
    W5_STEPS,
    WORKERS,
    BenchError,
    Workers,
    burn,
    emit,
    fresh_pg_database,
    install_signal_handlers,
    latency_summary,
    w5_summary,
    wait_until,
    wanted,
)
from dbos import DBOS, DBOSClient, EnqueueOptions

QUEUE = "bench"
PG_DATABASE = "dbos_bench"


@DBOS.step()
def noop(value: int) -> int:
    return value + 1


@DBOS.workflow(name="chain")
def chain(seed: int) -> int:
    value = seed
    for _ in range(W1_STEPS):
        value = noop(value)
    return value


@DBOS.workflow(name="single")
def single(seed: int) -> int:
    return noop(seed)


@DBOS.step()
def burn_step(work_ms: float) -> float:
    return work_ms + burn()


@DBOS.workflow(name="burn_flow")
def burn_flow(seed: int) -> float:
    work_ms = 0.0
    for _ in range(W5_STEPS):
        work_ms = burn_step(work_ms)
    return work_ms


@DBOS.step()
async def root_step(seed: int) -> int:
    return seed


@DBOS.step()
async def branch_step(value: int, i: int) -> int:
    return value + i


@DBOS.step()
async def join_step(values: list[int]) -> int:
    return sum(values)


@DBOS.workflow(name="fanout")
async def fanout(seed: int) -> int:
    value = await root_step(seed)
    values = await asyncio.gather(*(branch_step(value, i) for i in range(W3_BRANCHES)))
    return await join_step(list(values))


def run_worker(url: str, name: str) -> None:
    DBOS(config={"name": "bench", "system_database_url": url, "executor_id": name})
    DBOS.launch()
    DBOS.register_queue(QUEUE, worker_concurrency=CONCURRENCY)
    print(READY, flush=True)
    while True:
        time.sleep(3600)


@contextlib.contextmanager
def system_database(backend: str) -> Iterator[str]:
    if backend == "postgres":
        with fresh_pg_database(PG_DATABASE) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="dbos-bench-") as folder:
        yield f"sqlite:///{os.path.join(folder, 'dbos.db')}"


class Probe:
    def __init__(self, backend: str, url: str) -> None:
        self.table = "dbos.workflow_status" if backend == "postgres" else "workflow_status"
        if backend == "postgres":
            import psycopg

            self._conn: Any = psycopg.connect(url, autocommit=True)
            self._mark = "%s"
        else:
            self._conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._mark = "?"

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        sql = sql.replace("{t}", self.table).replace("%s", self._mark)
        return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self._conn.close()


def migrate(url: str) -> None:
    dbos_cli = Path(sys.executable).parent / "dbos"
    subprocess.run(
        [str(dbos_cli), "migrate", "-s", url], check=True, capture_output=True, timeout=120
    )


def worker_args(url: str, n: int) -> list[list[str]]:
    return [[os.path.abspath(__file__), "worker", url, f"w{i}"] for i in range(n)]


def batch(backend: str, workflow: str, n: int, steps: int, expect: Any) -> dict[str, Any]:
    with system_database(backend) as url:
        migrate(url)
        deadline = time.monotonic() + TIMEOUT
        client = DBOSClient(system_database_url=url)
        probe = Probe(backend, url)
        try:
            start = time.perf_counter()
            options = EnqueueOptions(workflow_name=workflow, queue_name=QUEUE)
            for seed in range(n):
                client.enqueue(options, seed)
            enqueue_s = time.perf_counter() - start
            with Workers(worker_args(url, WORKERS)) as workers:
                wait_until(
                    lambda: (
                        probe.rows(
                            "SELECT count(*) FROM {t} WHERE status IN ('SUCCESS', 'ERROR') "
                            "AND queue_name = %s",
                            (QUEUE,),
                        )[0][0]
                        >= n
                    ),
                    workers,
                    deadline,
                    f"{workflow} workflows",
                )
                spawned_ms = workers.spawned_at * 1000
                peak = workers.peak_rss_mb()
            first, last = probe.rows(
                "SELECT min(started_at_epoch_ms), max(updated_at) FROM {t} WHERE queue_name = %s",
                (QUEUE,),
            )[0]
            done = client.list_workflows(status="SUCCESS", queue_name=QUEUE, load_output=True)
            if sorted(w.output for w in done) != sorted(expect(seed) for seed in range(n)):
                raise BenchError(f"{workflow}: unexpected results")
        finally:
            probe.close()
            client.destroy()
    run_s = (last - first) / 1000
    return {
        "executions": n,
        "steps": n * steps,
        "enqueue_per_s": n / enqueue_s,
        "startup_s": (first - spawned_ms) / 1000,
        "run_s": run_s,
        "executions_per_s": n / run_s,
        "steps_per_s": n * steps / run_s,
        "peak_rss_mb": peak,
    }


def w1(backend: str) -> dict[str, Any]:
    """Workers up and idle first, then one client enqueues every workflow and waits."""
    n = W1_EXECUTIONS
    with system_database(backend) as url:
        migrate(url)
        deadline = time.monotonic() + TIMEOUT
        client = DBOSClient(system_database_url=url)
        probe = Probe(backend, url)
        try:
            with Workers(worker_args(url, WORKERS)) as workers:
                wait_until(workers.printed_ready, workers, deadline, "workers to launch")
                time.sleep(IDLE_SECONDS)
                idle = workers.rss_mb()
                options = EnqueueOptions(workflow_name="chain", queue_name=QUEUE)
                first = time.time()
                for seed in range(n):
                    client.enqueue(options, seed)
                submit_s = time.time() - first
                wait_until(
                    lambda: (
                        probe.rows(
                            "SELECT count(*) FROM {t} WHERE status IN ('SUCCESS', 'ERROR') "
                            "AND queue_name = %s",
                            (QUEUE,),
                        )[0][0]
                        >= n
                    ),
                    workers,
                    deadline,
                    "chain workflows",
                )
                peak = workers.peak_rss_mb()
            (last,) = probe.rows("SELECT max(updated_at) FROM {t} WHERE queue_name = %s", (QUEUE,))[
                0
            ]
            done = client.list_workflows(status="SUCCESS", queue_name=QUEUE, load_output=True)
            if sorted(w.output for w in done) != [seed + W1_STEPS for seed in range(n)]:
                raise BenchError("chain: unexpected results")
        finally:
            probe.close()
            client.destroy()
    run_s = last / 1000 - first
    return {
        "executions": n,
        "steps": n * W1_STEPS,
        "submit_per_s": n / submit_s,
        "run_s": run_s,
        "executions_per_s": n / run_s,
        "idle_rss_mb": idle,
        "peak_rss_mb": peak,
    }


def w2(backend: str) -> dict[str, Any]:
    with system_database(backend) as url:
        migrate(url)
        deadline = time.monotonic() + TIMEOUT
        client = DBOSClient(system_database_url=url)
        probe = Probe(backend, url)
        options = EnqueueOptions(workflow_name="single", queue_name=QUEUE)

        def submit_and_see(seed: int, workers: Workers) -> float:
            start = time.perf_counter()
            handle = client.enqueue(options, seed)
            return wait_done(probe, handle, start, workers, deadline, seed + 1)

        try:
            with Workers(worker_args(url, 1)) as workers:
                for seed in range(W2_WARMUP):
                    submit_and_see(-1 - seed, workers)
                time.sleep(2.0)
                latencies = [submit_and_see(seed, workers) for seed in range(W2_EXECUTIONS)]
        finally:
            probe.close()
            client.destroy()
    return {"executions": W2_EXECUTIONS, **latency_summary(latencies)}


def wait_done(
    probe: Probe, handle: Any, start: float, workers: Workers, deadline: float, expect: Any
) -> float:
    """Poll the workflow's status every ~1 ms; the milliseconds since ``start`` when it is
    done (``expect``: the result it must have, or None to skip the check)."""
    polls = 0
    while True:
        rows = probe.rows(
            "SELECT status FROM {t} WHERE workflow_uuid = %s", (handle.get_workflow_id(),)
        )
        if rows and rows[0][0] in ("SUCCESS", "ERROR"):
            elapsed = (time.perf_counter() - start) * 1000
            if rows[0][0] != "SUCCESS" or (expect is not None and handle.get_result() != expect):
                raise BenchError("unexpected result")
            return elapsed
        time.sleep(0.001)
        polls += 1
        if polls % 500 == 0:
            workers.check_alive()
            if time.monotonic() > deadline:
                raise BenchError("timed out waiting for a workflow")


def w5(backend: str) -> dict[str, Any]:
    """1 worker; one ``burn_flow`` at a time, enqueue -> seen done."""
    with system_database(backend) as url:
        migrate(url)
        deadline = time.monotonic() + TIMEOUT
        client = DBOSClient(system_database_url=url)
        probe = Probe(backend, url)
        options = EnqueueOptions(workflow_name="burn_flow", queue_name=QUEUE)
        flows_ms, work_ms = [], []
        try:
            with Workers(worker_args(url, 1)) as workers:
                wait_until(workers.printed_ready, workers, deadline, "the worker to launch")
                for seed in range(-1, W5_FLOWS):  # -1: warm-up
                    start = time.perf_counter()
                    handle = client.enqueue(options, seed)
                    elapsed = wait_done(probe, handle, start, workers, deadline, None)
                    if seed >= 0:
                        flows_ms.append(elapsed)
                        work_ms.append(handle.get_result())
                    else:
                        time.sleep(1.0)
                peak = workers.peak_rss_mb()
        finally:
            probe.close()
            client.destroy()
    return {**w5_summary(flows_ms, work_ms), "peak_rss_mb": peak}


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        run_worker(sys.argv[2], sys.argv[3])
        return
    install_signal_handlers()
    import dbos

    backends = sys.argv[1].split(",") if len(sys.argv) > 1 else ["postgres", "sqlite"]
    result: dict[str, Any] = {
        "peer": "dbos",
        "version": getattr(dbos, "__version__", None) or _dist_version("dbos"),
        "mode": f"DBOSClient.enqueue, 2 x DBOS.launch(), worker_concurrency {CONCURRENCY}",
    }
    for backend in backends:
        try:
            runs: dict[str, Any] = {
                "w1": w1,
                "w1_drain": lambda b: batch(
                    b, "chain", W1_EXECUTIONS, W1_STEPS, lambda s: s + W1_STEPS
                ),
                "w2": w2,
                "w3": lambda b: batch(
                    b,
                    "fanout",
                    W3_EXECUTIONS,
                    W3_BRANCHES + 2,
                    lambda s: s * W3_BRANCHES + sum(range(W3_BRANCHES)),
                ),
                "w5": w5,
            }
            result[backend] = {n: run(backend) for n, run in runs.items() if wanted(n)}
        except (BenchError, subprocess.SubprocessError) as exc:
            result[backend] = {"error": str(exc)[-1500:]}
    emit(result)


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
