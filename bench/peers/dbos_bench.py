"""DBOS peer benchmark: W1/W2/W3 of bench/workers.py on DBOS Transact.

Run inside bench/.venvs/dbos (bench/peers/setup.sh). Prints one JSON line.

DBOS runs workflows inside the application's processes. Here the "workers" are 2
processes (W2: 1) that call ``DBOS.launch()`` and dequeue from the queue ``bench``
(``worker_concurrency=64``, DBOS's default queue polling of 1 s); this script only
enqueues with ``DBOSClient`` and reads ``workflow_status``, as bench/workers.py does with
Conveyor's tables. Each workload run gets a fresh system database: a PostgreSQL database
``dbos_bench`` or a SQLite file, created with ``dbos migrate``.

- W1: 500 ``chain`` workflows of 5 ``@DBOS.step`` no-ops, enqueued before the workers
  start. ``run s`` = ``max(updated_at) - min(started_at_epoch_ms)``: first dequeue to last
  finish.
- W2: 200 times enqueue ``single`` (1 step), then poll its status every ~1 ms.
- W3: 20 async ``fanout`` workflows: a root step, 50 steps run with ``asyncio.gather``, a
  join step (52 steps each).
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
    TIMEOUT,
    W1_EXECUTIONS,
    W1_STEPS,
    W2_EXECUTIONS,
    W2_WARMUP,
    W3_BRANCHES,
    W3_EXECUTIONS,
    WORKERS,
    BenchError,
    Workers,
    emit,
    fresh_pg_database,
    install_signal_handlers,
    latency_summary,
    wait_until,
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
            polls = 0
            while True:
                rows = probe.rows(
                    "SELECT status FROM {t} WHERE workflow_uuid = %s",
                    (handle.get_workflow_id(),),
                )
                if rows and rows[0][0] in ("SUCCESS", "ERROR"):
                    if rows[0][0] != "SUCCESS" or handle.get_result() != seed + 1:
                        raise BenchError("single: unexpected result")
                    return (time.perf_counter() - start) * 1000
                time.sleep(0.001)
                polls += 1
                if polls % 500 == 0:
                    workers.check_alive()
                    if time.monotonic() > deadline:
                        raise BenchError("W2 timed out")

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
            result[backend] = {
                "w1": batch(backend, "chain", W1_EXECUTIONS, W1_STEPS, lambda s: s + W1_STEPS),
                "w2": w2(backend),
                "w3": batch(
                    backend,
                    "fanout",
                    W3_EXECUTIONS,
                    W3_BRANCHES + 2,
                    lambda s: s * W3_BRANCHES + sum(range(W3_BRANCHES)),
                ),
            }
        except (BenchError, subprocess.SubprocessError) as exc:
            result[backend] = {"error": str(exc)[-1500:]}
    emit(result)


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    main()
