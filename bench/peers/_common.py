"""Helpers shared by the peer scripts. Standard library and psycopg only: each peer script
runs in its own virtualenv (bench/.venvs/<peer>), which has psycopg but not Conveyor."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

PG_ADMIN_URL = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# The same workload sizes as bench/workers.py.
W1_EXECUTIONS = 500
W1_STEPS = 5
W2_EXECUTIONS = 200
W2_WARMUP = 5
W3_EXECUTIONS = 20
W3_BRANCHES = 50
WORKERS = 2  # worker processes for W1 and W3 (W2: 1)
CONCURRENCY = 64  # per worker process, as bench/workers.py's default
TIMEOUT = float(os.environ.get("PEER_BENCH_TIMEOUT", "300"))  # seconds per workload run


class BenchError(Exception):
    pass


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100), as bench/workers.py."""
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def pg_url(database: str) -> str:
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{database}"


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


@contextlib.contextmanager
def fresh_pg_database(name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped afterwards."""
    _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _pg_admin(f"CREATE DATABASE {name}")
    try:
        yield pg_url(name)
    finally:
        _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Workers:
    """Worker processes: this script started again with ``worker`` arguments. Always
    stopped (SIGTERM, then SIGKILL after 10 s)."""

    def __init__(self, args: list[list[str]], env: dict[str, str] | None = None) -> None:
        self._args = args
        self._env = {**os.environ, **(env or {})}
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        self.spawned_at = 0.0

    def __enter__(self) -> Workers:
        self.spawned_at = time.time()
        for argv in self._args:
            log = tempfile.TemporaryFile()
            self._logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, *argv],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    start_new_session=True,
                )
            )
        return self

    def check_alive(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                raise BenchError(f"worker {i} exited with {proc.returncode}: {self.tail(i)}")

    def tail(self, i: int) -> str:
        log = self._logs[i]
        log.seek(0)
        return log.read().decode(errors="replace")[-2000:]

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(end - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for log in self._logs:
            log.close()


def wait_until(
    check: Any, workers: Workers, deadline: float, what: str, every: float = 0.05
) -> Any:
    while True:
        value = check()
        if value:
            return value
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(every)


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies_ms, 50),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": max(latencies_ms),
        "slow": sum(v >= 1000 for v in latencies_ms),
    }


def emit(result: dict[str, Any]) -> None:
    """The one JSON line the peer script prints."""
    print(json.dumps(result), flush=True)


def install_signal_handlers() -> None:
    def _raise(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGHUP, _raise)
