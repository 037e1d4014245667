"""Procrastinate peer benchmark: bench/workers.py's workloads on Procrastinate.

Run inside bench/.venvs/procrastinate (bench/peers/setup.sh). Prints one JSON line.

Procrastinate is a job queue, not a workflow engine: it has no chains, no stored results
and no join. The closest idiomatic equivalents, chosen here:

- W1 (submit included): the 2 workers are started and registered (``procrastinate_workers``),
  sit idle 3 s (their RSS is read), then this client defers 500 first ``step`` jobs one
  ``defer_async`` at a time and waits; each ``step`` job defers the next one
  (``step.defer_async`` inside the task), 5 jobs per execution. Rate = 500 / (first defer
  -> last ``succeeded`` event).
- W1-batch: the same, the 500 first jobs deferred with ``batch_defer_async`` in batches
  of 100 (the counterpart of ``Conveyor.execute_many``).
- W1-drain (claim to finish, deferred beforehand): the 500 first jobs are deferred before
  the workers start; first ``started`` event -> last ``succeeded`` event.
- W2: 200 times defer one ``single`` job, then poll ``procrastinate_jobs.status`` every
  ~1 ms until it is ``succeeded``.
- W3: a ``root`` job inserts a counter row (50) and batch-defers 50 ``branch`` jobs. Each
  branch stores its value and decrements the counter in one statement; the branch that
  brings it to 0 defers ``join``, which sums the 50 stored values. Deferred beforehand.
- W5: 1 worker; 5 times (after a warm-up) defer ``burn`` k=1; each ``burn`` job busy-loops
  10 ms and defers k+1 with its measured time added; k=40 writes the total to a table this
  client polls every ~1 ms. ``burn`` is a sync task (Procrastinate runs it in a thread), as
  CPU-bound work should be. The result also has the per-job medians from
  ``procrastinate_events`` (deferred -> started, started -> succeeded): on the loaded
  2-core machine some flows took 10-20 s while those medians stayed near 14 ms and 44 ms,
  i.e. a few wake-ups per flow waited for the 5 s poll (the async form did the same).

Workers: 2 processes (W2: 1), each ``app.run_worker_async(concurrency=64)``, with
LISTEN/NOTIFY on (the default) and the default 5 s polling. Every workload run gets a
fresh database ``procrastinate_bench``. ``run s`` = first ``started`` event to last
``succeeded`` event (``procrastinate_events``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import procrastinate
import psycopg
from _common import (
    CONCURRENCY,
    IDLE_SECONDS,
    TIMEOUT,
    W1_BATCH,
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
    pg_url,
    w5_summary,
    wanted,
)

PG_DATABASE = "procrastinate_bench"
DSN = os.environ.get("PROCRASTINATE_BENCH_DSN", pg_url(PG_DATABASE))
app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=DSN))

BENCH_TABLES = """
CREATE TABLE bench_counter (seed integer PRIMARY KEY, remaining integer NOT NULL);
CREATE TABLE bench_branch (seed integer, i integer, value integer, PRIMARY KEY (seed, i));
CREATE TABLE bench_join (seed integer PRIMARY KEY, total integer NOT NULL);
CREATE TABLE bench_burn (seed integer PRIMARY KEY, work_ms float8 NOT NULL);
"""


@app.task(name="step")
async def step(value: int, k: int) -> int:
    if k < W1_STEPS:
        await step.defer_async(value=value + 1, k=k + 1)
    return value + 1


@app.task(name="burn")
def burn_step(seed: int, k: int, work_ms: float) -> None:
    """A sync task (Procrastinate runs it in a thread), as CPU-bound work should be."""
    work_ms += burn()
    if k < W5_STEPS:
        burn_step.defer(seed=seed, k=k + 1, work_ms=work_ms)
    else:
        app.connector.execute_query(
            "INSERT INTO bench_burn VALUES (%(seed)s, %(work)s)", seed=seed, work=work_ms
        )


@app.task(name="single")
async def single(seed: int) -> int:
    return seed + 1


@app.task(name="root")
async def root(seed: int) -> None:
    await app.connector.execute_query_async(
        "INSERT INTO bench_counter VALUES (%(seed)s, %(n)s)", seed=seed, n=W3_BRANCHES
    )
    await branch.batch_defer_async(
        *({"value": seed, "seed": seed, "i": i} for i in range(W3_BRANCHES))
    )


@app.task(name="branch")
async def branch(value: int, seed: int, i: int) -> None:
    row = await app.connector.execute_query_one_async(
        "WITH ins AS (INSERT INTO bench_branch VALUES (%(seed)s, %(i)s, %(value)s)) "
        "UPDATE bench_counter SET remaining = remaining - 1 WHERE seed = %(seed)s "
        "RETURNING remaining",
        seed=seed,
        i=i,
        value=value + i,
    )
    if row["remaining"] == 0:
        await join.defer_async(seed=seed)


@app.task(name="join")
async def join(seed: int) -> None:
    await app.connector.execute_query_async(
        "INSERT INTO bench_join SELECT %(seed)s, sum(value) FROM bench_branch "
        "WHERE seed = %(seed)s",
        seed=seed,
    )


async def run_worker() -> None:
    async with app.open_async():
        await app.run_worker_async(concurrency=CONCURRENCY)


def worker_args(n: int) -> list[list[str]]:
    return [[os.path.abspath(__file__), "worker"] for _ in range(n)]


async def prepare() -> None:
    await app.schema_manager.apply_schema_async()
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(BENCH_TABLES)


async def wait_count(
    conn: psycopg.Connection[Any], sql: str, n: int, workers: Workers, deadline: float
) -> None:
    while conn.execute(sql).fetchone()[0] < n:  # type: ignore[index]
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError("timed out")
        await asyncio.sleep(0.05)


W1_DONE_SQL = (
    "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'step' "
    "AND status = 'succeeded' AND (args->>'k')::int = 5"
)


async def wait_registered(
    conn: psycopg.Connection[Any], n: int, workers: Workers, deadline: float
) -> None:
    while conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0] < n:  # type: ignore[index]
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError("the workers never registered")
        await asyncio.sleep(0.05)


def check_w1(conn: psycopg.Connection[Any], n: int) -> None:
    failed, jobs = conn.execute(
        "SELECT count(*) FILTER (WHERE status <> 'succeeded'), count(*) FROM procrastinate_jobs"
    ).fetchone()  # type: ignore[misc]
    got = sorted(
        r[0]
        for r in conn.execute(
            "SELECT (args->>'value')::int + 1 FROM procrastinate_jobs "
            "WHERE task_name = 'step' AND (args->>'k')::int = 5"
        )
    )
    if failed or jobs != n * W1_STEPS or got != [seed + W1_STEPS for seed in range(n)]:
        raise BenchError(f"w1: {failed} jobs not succeeded, {jobs} jobs, results differ")


async def w1(batch_size: int | None) -> dict[str, Any]:
    """Workers up and idle first, then one client defers every first job and waits."""
    deadline = time.monotonic() + TIMEOUT
    n = W1_EXECUTIONS
    with fresh_pg_database(PG_DATABASE):
        async with app.open_async():
            await prepare()
            with (
                psycopg.connect(DSN, autocommit=True) as conn,
                Workers(worker_args(WORKERS)) as workers,
            ):
                await wait_registered(conn, WORKERS, workers, deadline)
                await asyncio.sleep(IDLE_SECONDS)
                idle = workers.rss_mb()
                first = time.time()
                if batch_size is None:
                    for seed in range(n):
                        await step.defer_async(value=seed, k=1)
                else:
                    for at in range(0, n, batch_size):
                        await step.batch_defer_async(
                            *({"value": s, "k": 1} for s in range(at, min(at + batch_size, n)))
                        )
                submit_s = time.time() - first
                await wait_count(conn, W1_DONE_SQL, n, workers, deadline)
                peak = workers.peak_rss_mb()
            with psycopg.connect(DSN, autocommit=True) as conn:
                (last,) = conn.execute(
                    "SELECT extract(epoch FROM max(at)) FROM procrastinate_events "
                    "WHERE type = 'succeeded'"
                ).fetchone()  # type: ignore[misc]
                check_w1(conn, n)
    run_s = float(last) - first
    found = {
        "executions": n,
        "steps": n * W1_STEPS,
        "submit_per_s": n / submit_s,
        "run_s": run_s,
        "executions_per_s": n / run_s,
        "idle_rss_mb": idle,
        "peak_rss_mb": peak,
    }
    if batch_size is not None:
        found["batch"] = batch_size
    return found


async def w5() -> dict[str, Any]:
    """1 worker; one 40-job flow at a time, first defer -> the total seen in bench_burn."""
    deadline = time.monotonic() + TIMEOUT
    flows_ms, work_ms = [], []
    with fresh_pg_database(PG_DATABASE):
        async with app.open_async():
            await prepare()
            with (
                psycopg.connect(DSN, autocommit=True) as conn,
                Workers(worker_args(1)) as workers,
            ):
                await wait_registered(conn, 1, workers, deadline)
                for seed in range(-1, W5_FLOWS):  # -1: warm-up
                    start = time.perf_counter()
                    await burn_step.defer_async(seed=seed, k=1, work_ms=0.0)
                    polls = 0
                    while True:
                        row = conn.execute(
                            "SELECT work_ms FROM bench_burn WHERE seed = %s", (seed,)
                        ).fetchone()
                        if row is not None:
                            break
                        await asyncio.sleep(0.001)
                        polls += 1
                        if polls % 500 == 0:
                            workers.check_alive()
                            if time.monotonic() > deadline:
                                raise BenchError("W5 timed out")
                    if seed >= 0:
                        flows_ms.append((time.perf_counter() - start) * 1000)
                        work_ms.append(float(row[0]))
                    else:
                        await asyncio.sleep(1.0)
                peak = workers.peak_rss_mb()
                pickup_ms, inside_ms = conn.execute(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s.at - d.at), "
                    "percentile_cont(0.5) WITHIN GROUP (ORDER BY f.at - s.at) "
                    "FROM procrastinate_jobs j "
                    "JOIN procrastinate_events d ON d.job_id = j.id AND d.type = 'deferred' "
                    "JOIN procrastinate_events s ON s.job_id = j.id AND s.type = 'started' "
                    "JOIN procrastinate_events f ON f.job_id = j.id AND f.type = 'succeeded' "
                    "WHERE j.task_name = 'burn'"
                ).fetchone()  # type: ignore[misc]
    return {
        **w5_summary(flows_ms, work_ms),
        "peak_rss_mb": peak,
        # per job, from procrastinate_events: deferred -> started, started -> succeeded
        "pickup_p50_ms": pickup_ms.total_seconds() * 1000,
        "job_p50_ms": inside_ms.total_seconds() * 1000,
    }


async def batch(name: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    with fresh_pg_database(PG_DATABASE):
        async with app.open_async():
            await prepare()
            start = time.perf_counter()
            if name == "w1":
                n, steps = W1_EXECUTIONS, W1_STEPS
                for seed in range(n):
                    await step.defer_async(value=seed, k=1)
                done_sql = (
                    "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'step' "
                    "AND status = 'succeeded' AND (args->>'k')::int = 5"
                )
            else:
                n, steps = W3_EXECUTIONS, W3_BRANCHES + 2
                for seed in range(n):
                    await root.defer_async(seed=seed)
                done_sql = (
                    "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'join' "
                    "AND status = 'succeeded'"
                )
            enqueue_s = time.perf_counter() - start
        with psycopg.connect(DSN, autocommit=True) as conn:
            with Workers(worker_args(WORKERS)) as workers:
                await wait_count(conn, done_sql, n, workers, deadline)
                spawned = workers.spawned_at
                peak = workers.peak_rss_mb()
            first, last, startup = conn.execute(
                "SELECT min(at) FILTER (WHERE type = 'started'), "
                "max(at) FILTER (WHERE type = 'succeeded'), "
                "extract(epoch FROM min(at) FILTER (WHERE type = 'started')) - %s "
                "FROM procrastinate_events",
                (spawned,),
            ).fetchone()  # type: ignore[misc]
            failed = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status <> 'succeeded'"
            ).fetchone()[0]  # type: ignore[index]
            jobs = conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0]  # type: ignore[index]
            if name == "w1":
                got = sorted(
                    r[0]
                    for r in conn.execute(
                        "SELECT (args->>'value')::int + 1 FROM procrastinate_jobs "
                        "WHERE task_name = 'step' AND (args->>'k')::int = 5"
                    )
                )
                expected = [seed + W1_STEPS for seed in range(n)]
            else:
                got = sorted(r[0] for r in conn.execute("SELECT total FROM bench_join"))
                expected = sorted(seed * W3_BRANCHES + sum(range(W3_BRANCHES)) for seed in range(n))
    if failed or jobs != n * steps or got != expected:
        raise BenchError(f"{name}: {failed} jobs not succeeded, {jobs} jobs, results differ")
    run_s = (last - first).total_seconds()
    return {
        "executions": n,
        "steps": n * steps,
        "enqueue_per_s": n / enqueue_s,
        "startup_s": float(startup),
        "run_s": run_s,
        "executions_per_s": n / run_s,
        "steps_per_s": n * steps / run_s,
        "peak_rss_mb": peak,
    }


async def w2() -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    with fresh_pg_database(PG_DATABASE):
        async with app.open_async():
            await prepare()
            with (
                psycopg.connect(DSN, autocommit=True) as conn,
                Workers(worker_args(1)) as workers,
            ):
                while not conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0]:  # type: ignore[index]
                    workers.check_alive()
                    await asyncio.sleep(0.05)

                async def submit_and_see(seed: int) -> float:
                    start = time.perf_counter()
                    job_id = await single.defer_async(seed=seed)
                    polls = 0
                    while True:
                        status = conn.execute(
                            "SELECT status FROM procrastinate_jobs WHERE id = %s", (job_id,)
                        ).fetchone()[0]  # type: ignore[index]
                        if status in ("succeeded", "failed", "aborted", "cancelled"):
                            if status != "succeeded":
                                raise BenchError(f"single job {status}")
                            return (time.perf_counter() - start) * 1000
                        await asyncio.sleep(0.001)
                        polls += 1
                        if polls % 500 == 0:
                            workers.check_alive()
                            if time.monotonic() > deadline:
                                raise BenchError("W2 timed out")

                for seed in range(W2_WARMUP):
                    await submit_and_see(-1 - seed)
                await asyncio.sleep(2.0)
                latencies = [await submit_and_see(seed) for seed in range(W2_EXECUTIONS)]
    return {"executions": W2_EXECUTIONS, **latency_summary(latencies)}


async def run_all() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "peer": "procrastinate",
        "version": version("procrastinate"),
        "mode": f"jobs deferring jobs, PsycopgConnector, 2 x run_worker(concurrency={CONCURRENCY})",
        **{
            name: await run()
            for name, run in (
                ("w1", lambda: w1(None)),
                ("w1_batch", lambda: w1(W1_BATCH)),
                ("w1_drain", lambda: batch("w1")),
                ("w2", w2),
                ("w3", lambda: batch("w3")),
                ("w5", w5),
            )
            if wanted(name)
        },
    }


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(run_worker())
        return
    install_signal_handlers()
    emit(asyncio.run(run_all()))


if __name__ == "__main__":
    main()
