"""Worker-process benchmark: real `conveyor worker` processes on SQLite and PostgreSQL.

Run from the repository root with the project's virtualenv active::

    python bench/workers.py                                 # every workload on both backends
    python bench/workers.py --backends sqlite --workloads w1,w5 --executions 100
    python bench/workers.py --repeat 3                      # median of 3 runs per workload

- W1 (submit included): 2 workers started and idle first; then one client submits 500
  executions of a 5-node chain, one ``Conveyor.execute`` at a time, and waits for them all.
  Rate = 500 / (first submit -> last finish).
- W1-batch: the same, submitted with ``Conveyor.execute_many`` in batches (``--batch``).
- W1-drain (claim to finish, enqueued beforehand): the 500 are enqueued before the 2
  workers start; rate = 500 / (first claim -> last finish). Not what a client sees.
- W2: 200 sequential 1-step executions through 1 idle worker: submit -> seen latency.
- W3: 20 executions of root -> 50 parallel transforms -> join, 2 workers (drain-style).
- W5: 1 worker; flows of 40 sequential steps that each burn 10 ms of CPU, one at a time:
  seconds per flow (submit -> seen) and the engine's overhead per step.
- Memory: each worker's RSS once idle (started, listening, nothing to do) and its peak
  (VmHWM) over the workload.

This process only submits (``Conveyor.execute``) and watches the database; the work is
done by separate ``conveyor worker`` processes. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from conveyor import Submission
from conveyor.app import Conveyor
from conveyor.engine.state import TERMINAL
from conveyor.nodes.builtin import build_registry

PG_ADMIN_URL = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = f"conveyor_bench_w_{os.getpid()}"  # one per run: runs may overlap
BACKENDS = ("sqlite", "postgres")
WORKLOADS = ("w1", "w1-batch", "w1-drain", "w2", "w3", "w5")  # --workloads keys, run order
NAMES = {w: w.upper().replace("-BATCH", "-batch").replace("-DRAIN", "-drain") for w in WORKLOADS}
# What each workload name means, printed with every table so none can be misread.
LEGEND = {
    "W1": "W1 (submit included): workers idle first, then 1 client submits N x 5-step "
    "executions one Conveyor.execute at a time and waits; first submit -> last finish",
    "W1-batch": "W1-batch (submit included): the same, submitted with Conveyor.execute_many "
    "in batches; first submit -> last finish",
    "W1-drain": "W1-drain (claim to finish, enqueued beforehand): N enqueued before the "
    "workers start; first claim -> last finish; excludes the client's submit",
    "W2": "W2: 1 worker, 200 sequential 1-step executions, submit -> seen done (p50/p99)",
    "W3": "W3: 20 x (root -> 50 parallel -> join), enqueued beforehand; first claim -> last finish",
    "W5": "W5: 1 worker, flows of 40 sequential steps each burning 10 ms CPU, one flow at a "
    "time; s per flow (submit -> seen) and overhead per step = (flow - measured work) / 40",
}
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PLUGIN = "bench_nodes"  # bench/bench_nodes.py: the W5 node type, loaded with --plugin
TERMINAL_STATUSES = tuple(sorted(s.value for s in TERMINAL))
SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # how the store writes timestamps on SQLite

W1_EXECUTIONS, W1_NODES = 500, 5
W2_EXECUTIONS, W2_WARMUP = 200, 5
W3_EXECUTIONS, W3_WIDTH = 20, 50
W5_FLOWS, W5_STEPS, W5_BURN_MS = 5, 40, 10.0
W1_BATCH = 100  # W1-batch: executions per execute_many call
IDLE_SECONDS = 3.0  # W1: how long the started workers sit idle before their RSS is read
WATCH_SECONDS = 0.05  # W1/W3: how often the finished count is checked
STALL_SECONDS = 60.0  # fail when nothing finishes for this long
DEFAULT_TIMEOUTS = {
    "w1": 300.0,
    "w1-batch": 300.0,
    "w1-drain": 300.0,
    "w2": 420.0,
    "w3": 300.0,
    "w5": 300.0,
}  # seconds per workload run
WORKER_COMMAND = [sys.executable, "-c", "from conveyor.cli.main import main; main()", "worker"]


class BenchError(Exception):
    """The benchmark could not produce a valid measurement."""


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwind through every ``finally`` so worker processes are stopped."""


# -- workflows ------------------------------------------------------------------------------


def chain_definition() -> dict[str, Any]:
    """W1: n1 -> ... -> n5, each a transform built from its predecessor (as bench/engine.py)."""
    nodes: list[dict[str, Any]] = [
        {
            "id": "n1",
            "type": "transform",
            "config": {"output": {"value": "{{ input.seed }}", "trail": "n1"}},
        }
    ]
    for i in range(2, W1_NODES + 1):
        prev = f"n{i - 1}"
        output = {
            "value": f"{{{{ nodes.{prev}.output.value + 1 }}}}",
            "trail": f"{{{{ nodes.{prev}.output.trail }}}}-n{i}",
        }
        nodes.append(
            {"id": f"n{i}", "type": "transform", "needs": [prev], "config": {"output": output}}
        )
    return {"name": "bench-chain", "description": "worker benchmark W1", "nodes": nodes}


def chain_result(seed: int) -> dict[str, Any]:
    trail = "-".join(f"n{i}" for i in range(1, W1_NODES + 1))
    return {f"n{W1_NODES}": {"value": seed + W1_NODES - 1, "trail": trail}}


def single_definition() -> dict[str, Any]:
    """W2: one transform node."""
    node = {"id": "only", "type": "transform", "config": {"output": {"value": "{{ input.seed }}"}}}
    return {"name": "bench-single", "description": "worker benchmark W2", "nodes": [node]}


def single_result(seed: int) -> dict[str, Any]:
    return {"only": {"value": seed}}


def fanout_definition() -> dict[str, Any]:
    """W3: root -> p1..p50 (in parallel) -> join, which sums what the branches produced."""
    branches = [f"p{i}" for i in range(1, W3_WIDTH + 1)]
    nodes: list[dict[str, Any]] = [
        {"id": "root", "type": "transform", "config": {"output": {"seed": "{{ input.seed }}"}}}
    ]
    for i, branch in enumerate(branches, start=1):
        nodes.append(
            {
                "id": branch,
                "type": "transform",
                "needs": ["root"],
                "config": {"output": {"value": f"{{{{ nodes.root.output.seed + {i} }}}}"}},
            }
        )
    total = " + ".join(f"nodes.{b}.output.value" for b in branches)
    nodes.append(
        {
            "id": "join",
            "type": "transform",
            "needs": branches,
            "config": {"output": {"sum": f"{{{{ {total} }}}}"}},
        }
    )
    return {"name": "bench-fanout", "description": "worker benchmark W3", "nodes": nodes}


def fanout_result(seed: int) -> dict[str, Any]:
    return {"join": {"sum": W3_WIDTH * seed + W3_WIDTH * (W3_WIDTH + 1) // 2}}


def burn_definition() -> dict[str, Any]:
    """W5: b1 -> ... -> b40, each a ``bench.burn`` step of 10 ms of CPU."""
    nodes: list[dict[str, Any]] = []
    for i in range(1, W5_STEPS + 1):
        node: dict[str, Any] = {
            "id": f"b{i}",
            "type": "bench.burn",
            "config": {"milliseconds": W5_BURN_MS},
        }
        if i > 1:
            node["needs"] = [f"b{i - 1}"]
        nodes.append(node)
    return {"name": "bench-burn", "description": "worker benchmark W5", "nodes": nodes}


# -- databases ------------------------------------------------------------------------------


def postgres_unavailable() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {detail}"


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


def _pg_version() -> str:
    """The server's version and its durability settings, as the figures were measured."""
    with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
        found = [
            str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
            for name in ("server_version", "synchronous_commit", "fsync")
        ]
    return f"{found[0]} (synchronous_commit={found[1]}, fsync={found[2]})"


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, empty database URL for ``backend``; removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-w-") as folder:
            yield f"sqlite:///{os.path.join(folder, 'bench.db')}"
        return
    _pg_admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    _pg_admin(f"CREATE DATABASE {PG_DATABASE}")
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{PG_DATABASE}"
    finally:
        _pg_admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


class Probe:
    """A raw driver connection (no SQLAlchemy, autocommit) for cheap status polls and the
    final checks. SQL is written with ``%s`` placeholders."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend = backend
        self._sqlite: sqlite3.Connection | None = None
        self._pg: psycopg.Connection[Any] | None = None
        if backend == "sqlite":
            path = url.removeprefix("sqlite:///")
            self._sqlite = sqlite3.connect(path, isolation_level=None, timeout=30)
        else:
            self._pg = psycopg.connect(url, autocommit=True, connect_timeout=5)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._sqlite is not None:
            return self._sqlite.execute(sql.replace("%s", "?"), params).fetchall()
        assert self._pg is not None
        return self._pg.execute(sql, params).fetchall()

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        found = self.rows(sql, params)
        return found[0][0] if found else None

    def json(self, value: Any) -> Any:
        """JSON columns: text on SQLite, decoded already by psycopg on PostgreSQL."""
        return json.loads(value) if isinstance(value, str) else value

    def time(self, value: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.strptime(value, SQLITE_TIME_FORMAT).replace(tzinfo=UTC)

    def terminal_count(self) -> int:
        marks = ", ".join(["%s"] * len(TERMINAL_STATUSES))
        return int(
            self.value(
                f"SELECT count(*) FROM executions WHERE status IN ({marks})", TERMINAL_STATUSES
            )
        )

    def server_cpu_seconds(self) -> float | None:
        """PostgreSQL: CPU time of the server processes connected to this database (the
        workers' pools and this probe), if the server runs on this machine."""
        if self._pg is None:
            return None
        pids = self.rows("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        found = [_proc_cpu_seconds(pid) for (pid,) in pids if os.path.exists(f"/proc/{pid}")]
        return sum(found) if found else None

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            self._pg.close()


# -- worker processes -----------------------------------------------------------------------


def _proc_status(pid: int, key: str) -> float:
    """A ``kB`` field of /proc/PID/status, in MB (0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


@dataclass
class WorkerStats:
    rss_mb: float
    peak_rss_mb: float
    cpu_seconds: float


class Workers:
    """``count`` `conveyor worker` processes; ``stop`` always ends them (SIGTERM, then
    SIGKILL after a grace period)."""

    def __init__(
        self,
        url: str,
        count: int,
        concurrency: int,
        log_dir: str,
        env: dict[str, str],
        plugins: tuple[str, ...] = (),
    ) -> None:
        self.url = url
        self.count = count
        self.concurrency = concurrency
        self.log_dir = log_dir
        self.env = {**os.environ, **env, "CONVEYOR_DATABASE_URL": url}
        self.extra: list[str] = []
        for plugin in plugins:  # as a user would: --plugin MODULE, the module on PYTHONPATH
            self.extra += ["--plugin", plugin]
            self.env["PYTHONPATH"] = os.pathsep.join(
                p for p in (BENCH_DIR, self.env.get("PYTHONPATH")) if p
            )
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self) -> None:
        for _ in range(self.count):
            handle, name = tempfile.mkstemp(dir=self.log_dir, prefix="worker-", suffix=".log")
            self.logs.append(Path(name))
            with os.fdopen(handle, "wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        [*WORKER_COMMAND, "--concurrency", str(self.concurrency), *self.extra],
                        env=self.env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def check_alive(self) -> None:
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                raise BenchError(
                    f"worker {process.pid} exited with status {process.returncode}:\n"
                    + self.tail(log)
                )

    def started(self) -> bool:
        """Every worker has logged its start line (it is about to claim or wait)."""
        for log in self.logs:
            try:
                if " started: database " not in log.read_text(errors="replace"):
                    return False
            except OSError:
                return False
        return True

    def tail(self, log: Path, lines: int = 20) -> str:
        try:
            text = log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text[-lines:]) or "    (empty log)"

    def stats(self) -> list[WorkerStats]:
        return [
            WorkerStats(
                _proc_status(p.pid, "VmRSS"),
                _proc_status(p.pid, "VmHWM"),
                _proc_cpu_seconds(p.pid),
            )
            for p in self.processes
        ]

    def warnings(self) -> list[str]:
        """Log lines at WARNING or above (claim failures, lost leases, ...)."""
        found: list[str] = []
        for log in self.logs:
            try:
                text = log.read_text(errors="replace").splitlines()
            except OSError:
                continue
            found += [line for line in text if " WARNING " in line or " ERROR " in line]
        return found

    def write_transactions(self) -> int | None:
        """The write transactions every worker ran, from the line each logs when it stops
        ("commits: write transactions N, ..."); None if one has not logged it."""
        total = 0
        for log in self.logs:
            try:
                text = log.read_text(errors="replace")
            except OSError:
                return None
            found = re.search(r"commits: write transactions (\d+)", text)
            if found is None:
                return None
            total += int(found.group(1))
        return total

    def stop(self, grace: float = 30.0) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace
        for process in self.processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextmanager
def running_workers(
    url: str,
    count: int,
    concurrency: int,
    log_dir: str,
    env: dict[str, str],
    plugins: tuple[str, ...] = (),
) -> Iterator[Workers]:
    workers = Workers(url, count, concurrency, log_dir, env, plugins)
    try:
        yield workers
    finally:
        workers.stop()


# -- measurements ---------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    workload: str
    executions: int
    steps: int
    # W1, W1-batch: first submit -> last finish; W1-drain, W3: first claim -> last finish;
    # W2, W5: the whole sequential loop
    run_seconds: float
    # W1, W1-batch: the client's submit loop, workers running; W1-drain, W3: enqueueing
    # everything before the workers start
    enqueue_seconds: float | None = None
    # W1, W1-batch: workers spawned -> all started and listening; W1-drain, W3: workers
    # spawned -> first claim
    startup_seconds: float | None = None
    batch: int | None = None  # W1-batch: executions per execute_many call
    idle_rss_mb: list[float] = field(default_factory=list)  # W1, W1-batch: each worker, idle
    # W2, one value per execution: submit -> seen, and its parts (from the database's
    # timestamps: created_at is taken in the enqueue transaction, started_at at the claim,
    # finished_at just before the finishing transaction commits)
    latencies_ms: list[float] = field(default_factory=list)
    enqueue_ms: list[float] = field(default_factory=list)  # app.execute returned
    pickup_ms: list[float] = field(default_factory=list)  # created_at -> started_at
    inside_ms: list[float] = field(default_factory=list)  # started_at -> finished_at
    seen_lag_ms: list[float] = field(default_factory=list)  # finished_at -> seen
    # W5, one value per flow: the CPU work its 40 steps measured (sum of their busy loops)
    work_ms: list[float] = field(default_factory=list)
    workers: list[WorkerStats] = field(default_factory=list)
    server_cpu_seconds: float | None = None  # PostgreSQL server processes of this database
    # W1, W1-batch, first submit -> last finish: this client's CPU, the workers' CPU (from
    # before the first submit), and how busy the whole machine was (0-1 of all its cores)
    client_cpu_seconds: float | None = None
    workers_cpu_seconds: float | None = None
    machine_busy: float | None = None
    # W1, W1-batch, W1-drain, W3: the workers' write transactions (one-statement commits
    # included), from the summary each logs when it stops
    worker_transactions: int | None = None
    warnings: int = 0

    @property
    def execution_rate(self) -> float:
        return self.executions / self.run_seconds

    @property
    def step_rate(self) -> float:
        return self.steps / self.run_seconds

    @property
    def enqueue_rate(self) -> float | None:
        return self.executions / self.enqueue_seconds if self.enqueue_seconds else None

    def latency(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q) if self.latencies_ms else None

    def cpu_ms_per_execution(self) -> float | None:
        """W1, W1-batch: the CPU one execution cost, client + workers + PostgreSQL."""
        if self.client_cpu_seconds is None or self.workers_cpu_seconds is None:
            return None
        total = self.client_cpu_seconds + self.workers_cpu_seconds
        return (total + (self.server_cpu_seconds or 0.0)) / self.executions * 1000

    @property
    def tail_seconds(self) -> float | None:
        """W1, W1-batch: from the last submit returning to the last finish."""
        if self.workload not in ("W1", "W1-batch") or self.enqueue_seconds is None:
            return None
        return self.run_seconds - self.enqueue_seconds

    @property
    def overheads_ms(self) -> list[float]:
        """W5, per flow: (submit -> seen - the steps' measured work) / steps."""
        return [(f - w) / W5_STEPS for f, w in zip(self.latencies_ms, self.work_ms, strict=True)]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): p99 of 200 values is the 198th smallest."""
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass
class Context:
    backend: str
    url: str
    concurrency: int
    workers: int
    log_dir: str
    env: dict[str, str]
    timeout: float
    executions: int = W1_EXECUTIONS  # W1, W1-batch, W1-drain
    batch: int = W1_BATCH  # W1-batch
    flows: int = W5_FLOWS  # W5
    idle_seconds: float = IDLE_SECONDS  # W1, W1-batch
    latency_samples: int = W2_EXECUTIONS  # W2


async def open_app(url: str, definition: dict[str, Any], plugins: tuple[str, ...] = ()) -> Conveyor:
    app = await Conveyor.open(url, build_registry(plugins=plugins))
    try:
        await app.apply(definition)
    except BaseException:
        app.close()
        raise
    return app


async def enqueue_all(app: Conveyor, workflow: str, n: int) -> float:
    start = time.perf_counter()
    for seed in range(n):
        enqueued = await app.execute(workflow, {"seed": seed})
        if not enqueued.created:
            raise BenchError(f"enqueue {seed} returned an existing execution")
    return time.perf_counter() - start


async def enqueue_batches(app: Conveyor, workflow: str, n: int, batch: int) -> float:
    """``execute_many`` calls of ``batch`` executions, each with its own idempotency key."""
    start = time.perf_counter()
    for first in range(0, n, batch):
        items = [
            Submission({"seed": seed}, idempotency_key=f"w1-{seed}")
            for seed in range(first, min(first + batch, n))
        ]
        for seed, enqueued in enumerate(await app.execute_many(workflow, items), start=first):
            if isinstance(enqueued, Exception) or not enqueued.created:
                raise BenchError(f"enqueue {seed}: {enqueued}")
    return time.perf_counter() - start


async def wait_started(probe: Probe, workers: Workers, deadline: float) -> None:
    """Every worker logged its start and, on PostgreSQL, has its LISTEN connection up."""
    while not workers.started() or (
        probe.backend == "postgres"
        and probe.value(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'LISTEN%%'"
        )
        < workers.count
    ):
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError("the workers never started listening")
        await asyncio.sleep(0.05)


async def wait_all_terminal(probe: Probe, workers: Workers, n: int, deadline: float) -> None:
    done, last, last_change = 0, -1, time.monotonic()
    while done < n:
        await asyncio.sleep(WATCH_SECONDS)
        workers.check_alive()
        done = probe.terminal_count()
        now = time.monotonic()
        if done != last:
            last, last_change = done, now
        elif now - last_change > STALL_SECONDS:
            raise BenchError(f"no progress for {STALL_SECONDS:.0f}s: {done}/{n} terminal")
        if now > deadline:
            raise BenchError(f"timed out: {done}/{n} executions terminal")


def verify(
    probe: Probe, n: int, steps_each: int, expected: Callable[[int], dict[str, Any]] | None
) -> int:
    """Every execution succeeded with the expected result; return the number of steps."""
    by_status = dict(probe.rows("SELECT status, count(*) FROM executions GROUP BY status"))
    if by_status != {"succeeded": n}:
        sample = probe.rows(
            "SELECT id, status, error FROM executions WHERE status <> 'succeeded' LIMIT 1"
        )
        raise BenchError(f"expected {n} succeeded executions, found {by_status}; e.g. {sample}")
    wrong = []
    for execution_id, raw_input, raw_result, steps_succeeded in probe.rows(
        "SELECT e.id, i.input, e.result, e.steps_succeeded FROM executions e "
        "JOIN execution_inputs i ON i.execution_id = e.id"
    ):
        seed = probe.json(raw_input)["seed"]
        right = expected is None or probe.json(raw_result) == expected(seed)
        if not right or steps_succeeded != steps_each:
            wrong.append(execution_id)
    if wrong:
        raise BenchError(f"{len(wrong)} executions have a wrong result, e.g. {wrong[0]}")
    step_status = dict(probe.rows("SELECT status, count(*) FROM steps GROUP BY status"))
    if step_status != {"succeeded": n * steps_each}:
        raise BenchError(f"expected {n * steps_each} succeeded steps, found {step_status}")
    return n * steps_each


def first_start_last_finish(probe: Probe) -> tuple[datetime, datetime]:
    first, last = probe.rows("SELECT min(started_at), max(finished_at) FROM executions")[0]
    start, end = probe.time(first), probe.time(last)
    if start is None or end is None:
        raise BenchError("no started_at/finished_at recorded")
    return start, end


async def batch_workload(
    ctx: Context,
    name: str,
    definition: dict[str, Any],
    n: int,
    steps_each: int,
    expected: Callable[[int], dict[str, Any]],
) -> Result:
    """W1-drain and W3: enqueue ``n`` executions, then start the workers and wait for them
    all; timed from the first claim, so the client's submit is not in it."""
    deadline = time.monotonic() + ctx.timeout
    app = await open_app(ctx.url, definition)
    try:
        enqueue_seconds = await enqueue_all(app, definition["name"], n)
    finally:
        app.close()
    probe = Probe(ctx.backend, ctx.url)
    try:
        with running_workers(
            ctx.url, ctx.workers, ctx.concurrency, ctx.log_dir, ctx.env
        ) as workers:
            spawned = datetime.now(UTC)
            workers.start()
            await wait_all_terminal(probe, workers, n, deadline)
            stats = workers.stats()
            server_cpu = probe.server_cpu_seconds()
        worker_transactions = workers.write_transactions()
        step_count = verify(probe, n, steps_each, expected)
        start, end = first_start_last_finish(probe)
    finally:
        probe.close()
    return Result(
        ctx.backend,
        name,
        n,
        step_count,
        (end - start).total_seconds(),
        enqueue_seconds=enqueue_seconds,
        startup_seconds=(start - spawned).total_seconds(),
        workers=stats,
        server_cpu_seconds=server_cpu,
        worker_transactions=worker_transactions,
        warnings=len(workers.warnings()),
    )


async def w1_drain(ctx: Context) -> Result:
    return await batch_workload(
        ctx, "W1-drain", chain_definition(), ctx.executions, W1_NODES, chain_result
    )


async def submit_included(ctx: Context, name: str, batch: int | None) -> Result:
    """W1 and W1-batch, the users' way: the workers are started and left idle (their RSS
    read after ``idle_seconds``), then one client submits every execution while they run
    and waits for the last to finish. Timed from the first submit to the last finish."""
    deadline = time.monotonic() + ctx.timeout
    n = ctx.executions
    app = await open_app(ctx.url, chain_definition())
    probe = Probe(ctx.backend, ctx.url)
    try:
        with running_workers(
            ctx.url, ctx.workers, ctx.concurrency, ctx.log_dir, ctx.env
        ) as workers:
            spawned = time.perf_counter()
            workers.start()
            await wait_started(probe, workers, deadline)
            startup = time.perf_counter() - spawned
            await asyncio.sleep(ctx.idle_seconds)
            workers.check_alive()
            idle = [w.rss_mb for w in workers.stats()]
            workers_cpu = sum(w.cpu_seconds for w in workers.stats())
            server_cpu_before = probe.server_cpu_seconds()
            client_cpu = time.process_time()
            busy, total = machine_cpu()
            first_submit = datetime.now(UTC)
            if batch is None:
                submit_seconds = await enqueue_all(app, "bench-chain", n)
            else:
                submit_seconds = await enqueue_batches(app, "bench-chain", n, batch)
            await wait_all_terminal(probe, workers, n, deadline)
            busy_after, total_after = machine_cpu()
            client_cpu = time.process_time() - client_cpu
            stats = workers.stats()
            workers_cpu = sum(w.cpu_seconds for w in stats) - workers_cpu
            server_cpu = probe.server_cpu_seconds()
            if server_cpu is not None and server_cpu_before is not None:
                server_cpu -= server_cpu_before
        worker_transactions = workers.write_transactions()  # logged once they stopped
        step_count = verify(probe, n, W1_NODES, chain_result)
        _, end = first_start_last_finish(probe)
    finally:
        probe.close()
        app.close()
    return Result(
        ctx.backend,
        name,
        n,
        step_count,
        (end - first_submit).total_seconds(),
        enqueue_seconds=submit_seconds,
        startup_seconds=startup,
        batch=batch,
        idle_rss_mb=idle,
        workers=stats,
        server_cpu_seconds=server_cpu,
        client_cpu_seconds=client_cpu,
        workers_cpu_seconds=workers_cpu,
        machine_busy=(busy_after - busy) / (total_after - total),
        worker_transactions=worker_transactions,
        warnings=len(workers.warnings()),
    )


async def w1(ctx: Context) -> Result:
    return await submit_included(ctx, "W1", None)


async def w1_batch(ctx: Context) -> Result:
    return await submit_included(ctx, "W1-batch", ctx.batch)


async def w3(ctx: Context) -> Result:
    return await batch_workload(
        ctx, "W3", fanout_definition(), W3_EXECUTIONS, W3_WIDTH + 2, fanout_result
    )


@dataclass
class Seen:
    execution_id: str
    enqueue_seconds: float  # app.execute returned
    seconds: float  # submit -> ``wait`` returned (told it finished)
    seen_at: datetime  # wall clock when it was seen, to compare with finished_at


async def submit_and_see(
    app: Conveyor,
    probe: Probe,
    workers: Workers,
    seed: int,
    deadline: float,
    workflow: str = "bench-single",
) -> Seen:
    """Enqueue one execution, then wait until told it finished (``Conveyor.wait``: the
    finishing commit's notification, not polling), as a user's code would."""
    start = time.perf_counter()
    enqueued = await app.execute(workflow, {"seed": seed})
    enqueue_seconds = time.perf_counter() - start
    try:
        async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
            await app.wait(enqueued.execution_id)
    except TimeoutError:
        workers.check_alive()
        raise BenchError(f"timed out waiting for execution {seed} of {workflow}") from None
    seconds = time.perf_counter() - start
    return Seen(enqueued.execution_id, enqueue_seconds, seconds, datetime.now(UTC))


async def wait_listening(probe: Probe, workers: Workers, deadline: float) -> None:
    """PostgreSQL: wait until the worker's LISTEN connection is up (it lengthens the
    worker's poll 5x, so W2 measures the steady state)."""
    while not probe.value(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query ILIKE 'LISTEN%%'"
    ):
        workers.check_alive()
        if time.monotonic() > deadline:
            raise BenchError("the worker never started LISTENing")
        await asyncio.sleep(0.05)


async def w2(ctx: Context) -> Result:
    """1 idle worker; for each of 200 executions: enqueue, then wait until it is finished."""
    deadline = time.monotonic() + ctx.timeout
    app = await open_app(ctx.url, single_definition())
    probe = Probe(ctx.backend, ctx.url)
    try:
        with running_workers(ctx.url, 1, ctx.concurrency, ctx.log_dir, ctx.env) as workers:
            workers.start()
            if ctx.backend == "postgres":
                await wait_listening(probe, workers, deadline)
            for seed in range(W2_WARMUP):  # imports, caches, first claims: not measured
                await submit_and_see(app, probe, workers, -1 - seed, deadline)
            await asyncio.sleep(2.0)  # let the worker settle into its idle wait
            seen: list[Seen] = []
            loop_start = time.perf_counter()
            for seed in range(ctx.latency_samples):
                seen.append(await submit_and_see(app, probe, workers, seed, deadline))
            loop_seconds = time.perf_counter() - loop_start
            stats = workers.stats()
            server_cpu = probe.server_cpu_seconds()
        verify(probe, ctx.latency_samples + W2_WARMUP, 1, single_result)
        times = {
            r[0]: [probe.time(v) for v in r[1:]]
            for r in probe.rows("SELECT id, created_at, started_at, finished_at FROM executions")
        }
    finally:
        probe.close()
        app.close()
    result = Result(
        ctx.backend,
        "W2",
        ctx.latency_samples,
        ctx.latency_samples,
        loop_seconds,
        workers=stats,
        server_cpu_seconds=server_cpu,
        warnings=len(workers.warnings()),
    )
    for s in seen:
        created, started, finished = times[s.execution_id]
        assert created and started and finished
        result.latencies_ms.append(s.seconds * 1000)
        result.enqueue_ms.append(s.enqueue_seconds * 1000)
        result.pickup_ms.append((started - created).total_seconds() * 1000)
        result.inside_ms.append((finished - started).total_seconds() * 1000)
        result.seen_lag_ms.append((s.seen_at - finished).total_seconds() * 1000)
    return result


async def w5(ctx: Context) -> Result:
    """1 worker with the ``bench.burn`` plugin; one flow of 40 x 10 ms CPU steps at a time,
    submit -> seen finished, after one warm-up flow."""
    deadline = time.monotonic() + ctx.timeout
    app = await open_app(ctx.url, burn_definition(), (PLUGIN,))
    probe = Probe(ctx.backend, ctx.url)
    try:
        with running_workers(
            ctx.url, 1, ctx.concurrency, ctx.log_dir, ctx.env, (PLUGIN,)
        ) as workers:
            workers.start()
            await wait_started(probe, workers, deadline)
            await submit_and_see(app, probe, workers, -1, deadline, "bench-burn")  # warm-up
            await asyncio.sleep(1.0)
            seen: list[Seen] = []
            loop_start = time.perf_counter()
            for seed in range(ctx.flows):
                seen.append(await submit_and_see(app, probe, workers, seed, deadline, "bench-burn"))
            loop_seconds = time.perf_counter() - loop_start
            stats = workers.stats()
            server_cpu = probe.server_cpu_seconds()
        verify(probe, ctx.flows + 1, W5_STEPS, None)
        work: dict[str, float] = {}
        for execution_id, output in probe.rows("SELECT execution_id, output FROM steps"):
            work[execution_id] = work.get(execution_id, 0.0) + probe.json(output)["ms"]
        times = {
            r[0]: [probe.time(v) for v in r[1:]]
            for r in probe.rows("SELECT id, started_at, finished_at FROM executions")
        }
    finally:
        probe.close()
        app.close()
    result = Result(
        ctx.backend,
        "W5",
        ctx.flows,
        ctx.flows * W5_STEPS,
        loop_seconds,
        workers=stats,
        server_cpu_seconds=server_cpu,
        warnings=len(workers.warnings()),
    )
    for s in seen:
        started, finished = times[s.execution_id]
        assert started and finished
        result.latencies_ms.append(s.seconds * 1000)
        result.enqueue_ms.append(s.enqueue_seconds * 1000)
        result.inside_ms.append((finished - started).total_seconds() * 1000)
        result.work_ms.append(work[s.execution_id])
    return result


RUNNERS = {"w1": w1, "w1-batch": w1_batch, "w1-drain": w1_drain, "w2": w2, "w3": w3, "w5": w5}


async def run_workload(ctx: Context, workload: str) -> Result:
    with database(ctx.backend) as url:
        ctx = replace(ctx, url=url)
        try:
            async with asyncio.timeout(ctx.timeout + 60):  # hard stop; loops check ctx.timeout
                return await RUNNERS[workload](ctx)
        except TimeoutError:
            raise BenchError(
                f"{NAMES[workload]} on {ctx.backend} exceeded {ctx.timeout + 60:.0f}s"
            ) from None


# -- output ---------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class Row:
    label: str
    values: dict[str, float | None]
    idle: str
    peak: str
    cpu: str


METRICS: list[tuple[str, str, int]] = [  # (key, column header, decimals)
    ("executions", "executions", 0),
    ("steps", "steps", 0),
    ("enqueue_rate", "submit/s", 0),
    ("startup", "startup s", 2),
    ("run", "run s", 2),
    ("tail", "last submit->last finish s", 2),
    ("exec_rate", "executions/s", 1),
    ("step_rate", "steps/s", 0),
    ("p50", "p50 ms", 1),
    ("p99", "p99 ms", 1),
    ("max", "max ms", 1),
    ("slow", ">=1s", 0),
    ("enqueue", "enqueue p50", 1),
    ("pickup", "pickup p50", 1),
    ("inside", "in-worker p50", 1),
    ("lag", "seen-lag p50", 1),
    ("work", "W5 work ms/flow", 1),
    ("overhead", "W5 overhead ms/step", 2),
    ("server_cpu", "server CPU s", 1),
    ("cpu_ms", "CPU ms/execution (client+workers+db)", 2),
    ("busy", "machine busy %", 0),
    ("tx", "worker write tx/execution", 1),
]


def metrics(r: Result) -> dict[str, float | None]:
    w5 = r.workload == "W5"
    return {
        "executions": r.executions,
        "steps": r.steps,
        "enqueue_rate": r.enqueue_rate,
        "startup": r.startup_seconds,
        "run": r.run_seconds,
        "tail": r.tail_seconds,
        "exec_rate": None if w5 or r.workload == "W2" else r.execution_rate,
        "step_rate": None if w5 else r.step_rate,
        "p50": r.latency(50),
        "p99": r.latency(99),
        "max": r.latency(100),
        "slow": sum(v >= 1000 for v in r.latencies_ms) if r.latencies_ms else None,
        "enqueue": percentile(r.enqueue_ms, 50) if r.enqueue_ms else None,
        "pickup": percentile(r.pickup_ms, 50) if r.pickup_ms else None,
        "inside": percentile(r.inside_ms, 50) if r.inside_ms else None,
        "lag": percentile(r.seen_lag_ms, 50) if r.seen_lag_ms else None,
        "work": statistics.median(r.work_ms) if r.work_ms else None,
        "overhead": statistics.median(r.overheads_ms) if r.work_ms else None,
        "server_cpu": r.server_cpu_seconds,
        "cpu_ms": r.cpu_ms_per_execution(),
        "busy": None if r.machine_busy is None else r.machine_busy * 100,
        "tx": None if r.worker_transactions is None else r.worker_transactions / r.executions,
    }


def _per_worker(results: list[Result], pick: Callable[[Result], list[float]], digits: int) -> str:
    """'a/b' per worker process; with several runs, the median of each position."""
    count = max(len(pick(r)) for r in results)
    if not count:
        return "-"
    return "/".join(
        f"{statistics.median(pick(r)[i] for r in results if i < len(pick(r))):.{digits}f}"
        for i in range(count)
    )


def _row(label: str, runs: list[Result]) -> Row:
    values = {k: _median([metrics(r)[k] for r in runs]) for k, _, _ in METRICS}
    return Row(
        label,
        values,
        _per_worker(runs, lambda r: r.idle_rss_mb, 0),
        _per_worker(runs, lambda r: [w.peak_rss_mb for w in r.workers], 0),
        _per_worker(runs, lambda r: [w.cpu_seconds for w in r.workers], 1),
    )


def backend_rows(results: list[Result], repeat: int) -> list[Row]:
    rows = []
    for workload in WORKLOADS:
        runs = [r for r in results if r.workload == NAMES[workload]]
        if not runs:
            continue
        label = NAMES[workload] + (f" (median of {len(runs)})" if len(runs) > 1 else "")
        rows.append(_row(label, runs))
        if repeat > 1:
            rows += [_row(f"  run {i}", [r]) for i, r in enumerate(runs, start=1)]
    return rows


def render_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(header)]

    def line(values: list[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    cells = [":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)]
    rule = "|" + "|".join(cells) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in body)])


def backend_table(results: list[Result], repeat: int) -> str:
    rows = backend_rows(results, repeat)
    used = [m for m in METRICS if any(row.values[m[0]] is not None for row in rows)]
    header = [
        "workload",
        *(h for _, h, _ in used),
        "idle RSS MB",
        "peak RSS MB",
        "worker CPU s",
    ]
    body = [
        [row.label, *(_f(row.values[k], d) for k, _, d in used), row.idle, row.peak, row.cpu]
        for row in rows
    ]
    return render_table(header, body)


def _max_peak(r: Result) -> float:
    return max(w.peak_rss_mb for w in r.workers)


SUMMARY: list[tuple[str, str, Callable[[Result], float | None], int]] = [
    (
        "W1",
        "W1 executions/s (submit included, one execute at a time)",
        lambda r: r.execution_rate,
        1,
    ),
    ("W1", "W1 client submit/s (workers running)", lambda r: r.enqueue_rate, 0),
    (
        "W1",
        "W1 CPU ms per execution (client + workers + PostgreSQL)",
        lambda r: r.cpu_ms_per_execution(),
        2,
    ),
    ("W1", "W1 machine busy % (all cores)", lambda r: metrics(r)["busy"], 0),
    ("W1", "W1 workers' write transactions per execution", lambda r: metrics(r)["tx"], 1),
    (
        "W1-batch",
        "W1-batch executions/s (submit included, execute_many)",
        lambda r: r.execution_rate,
        1,
    ),
    (
        "W1-drain",
        "W1-drain executions/s (claim to finish, enqueued beforehand)",
        lambda r: r.execution_rate,
        1,
    ),
    ("W2", "W2 p50 ms", lambda r: r.latency(50), 1),
    ("W2", "W2 p99 ms", lambda r: r.latency(99), 1),
    ("W3", "W3 wall s (claim to finish)", lambda r: r.run_seconds, 2),
    ("W5", "W5 s per flow (40 x 10 ms CPU)", lambda r: (r.latency(50) or 0) / 1000, 3),
    ("W5", "W5 overhead ms per step", lambda r: metrics(r)["overhead"], 2),
    ("W1", "idle worker RSS MB (max of workers)", lambda r: max(r.idle_rss_mb), 0),
    ("W1", "peak worker RSS MB under W1 (max of workers)", _max_peak, 0),
]


def summary_table(results: list[Result], backends: list[str]) -> str:
    body = []
    for workload, label, pick, digits in SUMMARY:
        cells = []
        for backend in backends:
            runs = [r for r in results if r.backend == backend and r.workload == workload]
            cells.append(_f(_median([pick(r) for r in runs]), digits))
        if any(c != "-" for c in cells):
            body.append([label, *cells])
    return render_table(["metric", *backends], body)


def legend(results: list[Result]) -> str:
    present = {r.workload for r in results}
    return "\n".join(f"- {text}" for name, text in LEGEND.items() if name in present)


def environment(backends: list[str]) -> str:
    parts = [
        f"python {platform.python_version()}",
        f"{platform.system()} {platform.machine()}",
        f"{os.cpu_count()} cpus",
        f"load {os.getloadavg()[0]:.1f}",
    ]
    if "sqlite" in backends:
        parts.append(f"sqlite {sqlite3.sqlite_version} (WAL, synchronous=FULL)")
    if "postgres" in backends:
        parts.append(f"postgresql {_pg_version()}")
    return ", ".join(parts)


# -- main -----------------------------------------------------------------------------------


def _choices(
    parser: argparse.ArgumentParser, name: str, raw: str, allowed: tuple[str, ...]
) -> list[str]:
    picked = [p.strip().lower() for p in raw.split(",") if p.strip()]
    unknown = sorted(set(picked) - set(allowed))
    if unknown or not picked:
        parser.error(f"--{name}: choose from {','.join(allowed)} (got {raw!r})")
    return [a for a in allowed if a in picked]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="default: sqlite,postgres")
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"default: {','.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, metavar="C", help="slots per worker (64)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="worker processes for W1, W1-batch, W1-drain and W3 (2)",
    )
    parser.add_argument(
        "--executions",
        type=int,
        default=W1_EXECUTIONS,
        metavar="N",
        help=f"executions of W1, W1-batch and W1-drain ({W1_EXECUTIONS})",
    )
    parser.add_argument(
        "--batch", type=int, default=W1_BATCH, metavar="B", help=f"W1-batch size ({W1_BATCH})"
    )
    parser.add_argument(
        "--w2-executions",
        type=int,
        default=W2_EXECUTIONS,
        metavar="N",
        help=f"W2 sequential executions ({W2_EXECUTIONS})",
    )
    parser.add_argument(
        "--flows", type=int, default=W5_FLOWS, metavar="N", help=f"W5 flows ({W5_FLOWS})"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=IDLE_SECONDS,
        metavar="S",
        help=f"W1: seconds the workers sit idle before their RSS is read ({IDLE_SECONDS:g})",
    )
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="runs per workload")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        metavar="S",
        help="CONVEYOR_POLL_SECONDS for the workers (default: theirs, 1 s)",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="also write every measurement (raw W2 latencies) here"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds allowed per workload run (default: W2 420, the others 300)",
    )
    args = parser.parse_args(argv)
    args.backends = _choices(parser, "backends", args.backends, BACKENDS)
    args.workloads = _choices(parser, "workloads", args.workloads, WORKLOADS)
    counts = (args.concurrency, args.workers, args.repeat, args.executions, args.batch)
    if min(*counts, args.flows, args.w2_executions) < 1:
        parser.error(
            "--concurrency, --workers, --repeat, --executions, --batch, --flows and "
            "--w2-executions must be at least 1"
        )
    return args


def _detail(r: Result) -> str:
    m = metrics(r)
    if r.workload == "W2":
        return f"p50 {_f(m['p50'])} ms, p99 {_f(m['p99'])} ms, max {_f(m['max'])} ms"
    if r.workload == "W5":
        return (
            f"{_f(m['p50'])} ms per flow (p50), work {_f(m['work'])} ms, "
            f"overhead {_f(m['overhead'], 2)} ms per step"
        )
    found = f"{_f(m['exec_rate'])} executions/s, {_f(m['step_rate'], 0)} steps/s"
    if r.idle_rss_mb:
        found += f", submit {_f(m['enqueue_rate'], 0)}/s, tail {_f(m['tail'], 2)} s"
    return found


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


async def run_all(
    args: argparse.Namespace, backends: list[str], env: dict[str, str]
) -> list[Result]:
    """Every run of every workload on every backend, runs interleaved."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-w-logs-") as log_dir:
        for run in range(1, args.repeat + 1):
            for backend in backends:
                for workload in args.workloads:
                    timeout = args.timeout or DEFAULT_TIMEOUTS[workload]
                    ctx = Context(
                        backend,
                        "",
                        args.concurrency,
                        args.workers,
                        log_dir,
                        env,
                        timeout,
                        args.executions,
                        args.batch,
                        args.flows,
                        args.idle_seconds,
                        args.w2_executions,
                    )
                    result = await run_workload(ctx, workload)
                    results.append(result)
                    warned = f", {result.warnings} worker warnings" if result.warnings else ""
                    print(
                        f"run {run}/{args.repeat} {backend} {NAMES[workload]}: "
                        f"{result.run_seconds:.2f}s, {_detail(result)}, all succeeded{warned}",
                        flush=True,
                    )
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    backends = list(args.backends)
    if "postgres" in backends:
        reason = postgres_unavailable()
        if reason is not None:
            print(f"skipping postgres: {reason}")
            backends.remove("postgres")
    if not backends:
        print("no backend to benchmark")
        return 1
    env = {}
    if args.poll_seconds is not None:
        env["CONVEYOR_POLL_SECONDS"] = str(args.poll_seconds)
    poll = f"{args.poll_seconds:g}s" if args.poll_seconds is not None else "default"
    print(
        f"{args.workers} worker processes (W2, W5: 1), concurrency {args.concurrency} each, "
        f"worker poll {poll}; {environment(backends)}",
        flush=True,
    )
    results = asyncio.run(run_all(args, backends, env))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    for backend in backends:
        print(f"\n{backend}\n")
        print(backend_table([r for r in results if r.backend == backend], args.repeat))
    print("\nsummary" + (f" (median of {args.repeat} runs)" if args.repeat > 1 else "") + "\n")
    print(summary_table(results, backends))
    print(f"\nworkloads (N = {args.executions}, W1-batch batches of {args.batch}):\n")
    print(legend(results))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        sys.exit(2)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"interrupted ({str(exc) or 'SIGINT'}); worker processes stopped", file=sys.stderr)
        sys.exit(130)
