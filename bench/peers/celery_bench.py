"""Celery peer benchmark: bench/workers.py's workloads on Celery with the Redis broker.

Run inside bench/.venvs/celery (bench/peers/setup.sh). Prints one JSON line.

- Broker and result backend: Redis at 127.0.0.1:6379, database 15 (flushed before each
  workload). ``task_acks_late`` is on: a message is acknowledged after its task ran, so a
  worker that dies mid-task does not lose it (Celery's at-least-once setting).
- Workers: 2 processes (W2: 1), each ``celery worker --pool threads --concurrency 64``,
  matching Conveyor's 2 processes x 64 slots.
- W1 (submit included): the 2 workers are started and answer a ping, sit idle 3 s (their
  RSS is read), then this client sends 500 ``chain(step x 5)`` one ``apply_async`` at a
  time and waits; rate = 500 / (first send -> last finish). The last step appends its
  finish time to a Redis list.
- W1-drain (claim to finish, sent beforehand): the 500 chains are sent before the workers
  start; the first step records its start time (SETNX), so ``run s`` is first start ->
  last finish, as bench/workers.py's W1-drain.
- W2: 1 idle worker; 200 times ``single.delay(i).get()`` (the result backend's pub/sub).
- W3: 20 ``chain(root, chord([branch x 50], join))``, sent beforehand.
- W5: 1 worker; 5 times (after a warm-up) ``chain(burn x 40).apply_async().get()``, each
  ``burn`` a 10 ms busy loop that adds its measured time to what it received.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import celery
import redis
from _common import (
    CONCURRENCY,
    IDLE_SECONDS,
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
    install_signal_handlers,
    latency_summary,
    w5_summary,
    wait_until,
    wanted,
)

REDIS_URL = os.environ.get("PEER_BENCH_REDIS", "redis://127.0.0.1:6379/15")
FIRST_KEY = "bench:first"
DONE_KEY = "bench:done"

app = celery.Celery("celery_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_acks_late=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
_redis: redis.Redis | None = None


def _r() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(REDIS_URL)
    return _redis


@app.task(name="step")
def step(value: int, k: int) -> int:
    if k == 1:
        _r().setnx(FIRST_KEY, time.time())
    if k == W1_STEPS:
        _r().rpush(DONE_KEY, json.dumps([time.time(), value + 1]))
    return value + 1


@app.task(name="single")
def single(seed: int) -> int:
    return seed + 1


@app.task(name="burn")
def burn_step(work_ms: float) -> float:
    return work_ms + burn()


@app.task(name="root")
def root(seed: int) -> int:
    _r().setnx(FIRST_KEY, time.time())
    return seed


@app.task(name="branch")
def branch(value: int, i: int) -> int:
    return value + i


@app.task(name="join")
def join(values: list[int]) -> int:
    total = sum(values)
    _r().rpush(DONE_KEY, json.dumps([time.time(), total]))
    return total


def worker_args(n: int) -> list[list[str]]:
    return [[os.path.abspath(__file__), "worker", f"w{i}"] for i in range(n)]


def run_worker(name: str) -> None:
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={CONCURRENCY}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{name}@%h",
        ]
    )


def wait_workers_ready(n: int, workers: Workers, deadline: float) -> None:
    def ready() -> bool:
        replies = app.control.ping(timeout=0.5) or []
        return len(replies) >= n

    wait_until(ready, workers, deadline, "celery workers to answer ping", every=0.2)


def check_done(n: int, expected: list[int]) -> list[tuple[float, int]]:
    done = [json.loads(x) for x in _r().lrange(DONE_KEY, 0, -1)]
    if len(done) != n or sorted(v for _, v in done) != sorted(expected):
        raise BenchError("unexpected results")
    return done


def w1() -> dict[str, Any]:
    """Workers up and idle first, then one client sends every chain and waits."""
    _r().flushdb()
    deadline = time.monotonic() + TIMEOUT
    n = W1_EXECUTIONS
    sigs = [
        celery.chain(step.s(seed, 1), *(step.s(k) for k in range(2, W1_STEPS + 1)))
        for seed in range(n)
    ]
    with Workers(worker_args(WORKERS)) as workers:
        wait_workers_ready(WORKERS, workers, deadline)
        time.sleep(IDLE_SECONDS)
        idle = workers.rss_mb()
        first = time.time()
        for sig in sigs:
            sig.apply_async()
        submit_s = time.time() - first
        wait_until(lambda: _r().llen(DONE_KEY) >= n, workers, deadline, "executions")
        peak = workers.peak_rss_mb()
    done = check_done(n, [seed + W1_STEPS for seed in range(n)])
    run_s = max(t for t, _ in done) - first
    return {
        "executions": n,
        "steps": n * W1_STEPS,
        "submit_per_s": n / submit_s,
        "run_s": run_s,
        "executions_per_s": n / run_s,
        "idle_rss_mb": idle,
        "peak_rss_mb": peak,
    }


def w5() -> dict[str, Any]:
    _r().flushdb()
    deadline = time.monotonic() + TIMEOUT

    def flow() -> Any:  # a new chain each time: a sent one keeps its task ids
        return celery.chain(burn_step.s(0.0), *(burn_step.s() for _ in range(W5_STEPS - 1)))

    flows_ms, work_ms = [], []
    with Workers(worker_args(1)) as workers:
        wait_workers_ready(1, workers, deadline)
        flow().apply_async().get(timeout=120)  # warm-up
        time.sleep(1.0)
        for _ in range(W5_FLOWS):
            start = time.perf_counter()
            work = flow().apply_async().get(timeout=120)
            flows_ms.append((time.perf_counter() - start) * 1000)
            work_ms.append(work)
            workers.check_alive()
        peak = workers.peak_rss_mb()
    return {**w5_summary(flows_ms, work_ms), "peak_rss_mb": peak}


def batch(signatures: list[Any], expected: list[int], steps: int) -> dict[str, Any]:
    """Send everything, then start 2 workers and wait for every execution to finish."""
    _r().flushdb()
    deadline = time.monotonic() + TIMEOUT
    start = time.perf_counter()
    for sig in signatures:
        sig.apply_async()
    enqueue_s = time.perf_counter() - start
    n = len(signatures)
    with Workers(worker_args(WORKERS)) as workers:
        wait_until(lambda: _r().llen(DONE_KEY) >= n, workers, deadline, "executions")
        spawned = workers.spawned_at
        peak = workers.peak_rss_mb()
    done = check_done(n, expected)
    first = float(_r().get(FIRST_KEY) or 0)
    run_s = max(t for t, _ in done) - first
    return {
        "executions": n,
        "steps": n * steps,
        "enqueue_per_s": n / enqueue_s,
        "startup_s": first - spawned,
        "run_s": run_s,
        "executions_per_s": n / run_s,
        "steps_per_s": n * steps / run_s,
        "peak_rss_mb": peak,
    }


def w1_drain() -> dict[str, Any]:
    sigs = [
        celery.chain(step.s(seed, 1), *(step.s(k) for k in range(2, W1_STEPS + 1)))
        for seed in range(W1_EXECUTIONS)
    ]
    return batch(sigs, [seed + W1_STEPS for seed in range(W1_EXECUTIONS)], W1_STEPS)


def w3() -> dict[str, Any]:
    sigs = [
        celery.chain(
            root.s(seed), celery.chord([branch.s(i) for i in range(W3_BRANCHES)], join.s())
        )
        for seed in range(W3_EXECUTIONS)
    ]
    expected = [seed * W3_BRANCHES + sum(range(W3_BRANCHES)) for seed in range(W3_EXECUTIONS)]
    return batch(sigs, expected, W3_BRANCHES + 2)


def w2() -> dict[str, Any]:
    _r().flushdb()
    deadline = time.monotonic() + TIMEOUT
    with Workers(worker_args(1)) as workers:
        wait_workers_ready(1, workers, deadline)
        for seed in range(W2_WARMUP):
            single.delay(-1 - seed).get(timeout=60)
        time.sleep(2.0)
        latencies = []
        for seed in range(W2_EXECUTIONS):
            start = time.perf_counter()
            if single.delay(seed).get(timeout=60) != seed + 1:
                raise BenchError("unexpected result")
            latencies.append((time.perf_counter() - start) * 1000)
            if time.monotonic() > deadline:
                raise BenchError("W2 timed out")
            workers.check_alive()
    return {"executions": W2_EXECUTIONS, **latency_summary(latencies)}


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        run_worker(sys.argv[2])
        return
    install_signal_handlers()
    result: dict[str, Any] = {
        "peer": "celery",
        "version": celery.__version__,
        "backend": f"redis {_r().info()['redis_version']}",
        "mode": f"chain/chord, redis broker + result backend, acks_late, 2 x threads:{CONCURRENCY}",
    }
    try:
        for name, run in (
            ("w1", w1),
            ("w1_drain", w1_drain),
            ("w2", w2),
            ("w3", w3),
            ("w5", w5),
        ):
            if wanted(name):
                result[name] = run()
    finally:
        _r().flushdb()
    emit(result)
    os._exit(0)  # skip redis-py's noisy pub/sub clean-up at interpreter exit


if __name__ == "__main__":
    main()
