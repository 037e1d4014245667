"""Helpers shared by the peer scripts. Standard library and psycopg only: each peer script
runs in its own virtualenv (bench/.venvs/<peer>), which has psycopg but not Conveyor."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import statistics
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
W5_FLOWS = int(os.environ.get("PEER_BENCH_W5_FLOWS", "5"))  # after 1 warm-up flow
W5_STEPS = 40
W5_BURN_MS = 10.0
IDLE_SECONDS = 3.0  # W1: workers sit idle this long before their RSS is read
READY = "BENCH-WORKER-READY"  # a worker prints this line when it is set up
# PEER_BENCH_WORKLOADS=w1,w5: run only these (a quick check); default every workload
_WANTED = {w.strip() for w in os.environ.get("PEER_BENCH_WORKLOADS", "").split(",") if w.strip()}


def wanted(workload: str) -> bool:
    return not _WANTED or workload in _WANTED


WORKERS = 2  # worker processes for W1 and W3 (W2: 1)
CONCURRENCY = 64  # per worker process, as bench/workers.py's default
TIMEOUT = float(os.environ.get("PEER_BENCH_TIMEOUT", "300"))  # seconds per workload run
# PEER_BENCH_EXECUTIONS, PEER_BENCH_W2_EXECUTIONS: smaller W1/W2 for a quick check
W1_EXECUTIONS = int(os.environ.get("PEER_BENCH_EXECUTIONS", str(W1_EXECUTIONS)))
W2_EXECUTIONS = int(os.environ.get("PEER_BENCH_W2_EXECUTIONS", str(W2_EXECUTIONS)))
W1_BATCH = int(os.environ.get("PEER_BENCH_BATCH", "100"))  # W1-batch, where a peer has one


class BenchError(Exception):
    pass


def burn(milliseconds: float = W5_BURN_MS) -> float:
    """W5's step: busy-loop the CPU for ``milliseconds`` (as bench/bench_nodes.py does for
    Conveyor); return the milliseconds it took."""
    start = time.perf_counter()
    while time.perf_counter() - start < milliseconds / 1000:
        pass
    return (time.perf_counter() - start) * 1000


def w5_summary(flows_ms: list[float], work_ms: list[float]) -> dict[str, Any]:
    """Seconds per flow (median) and overhead per step = (flow - measured work) / steps."""
    overheads = [(f - w) / W5_STEPS for f, w in zip(flows_ms, work_ms, strict=True)]
    return {
        "flows": len(flows_ms),
        "steps": W5_STEPS,
        "flow_s": statistics.median(flows_ms) / 1000,
        "work_ms": statistics.median(work_ms),
        "overhead_ms": statistics.median(overheads),
        "flows_ms": flows_ms,
    }


def proc_status_mb(pid: int, key: str) -> float:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM), in MB; 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


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

    def rss_mb(self) -> list[float]:
        """Each worker process's resident memory now (MB)."""
        return [proc_status_mb(p.pid, "VmRSS") for p in self.procs]

    def peak_rss_mb(self) -> list[float]:
        """Each worker process's peak resident memory so far (VmHWM, MB)."""
        return [proc_status_mb(p.pid, "VmHWM") for p in self.procs]

    def printed_ready(self) -> bool:
        """Every worker printed the ``READY`` line."""
        for log in self._logs:
            # A fresh open file description: seeking the shared one would move the
            # worker's write position too.
            with open(f"/proc/self/fd/{log.fileno()}", "rb") as text:
                if READY.encode() not in text.read():
                    return False
        return True

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
