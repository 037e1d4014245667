"""Saturation table: offered load of five-step executions over HTTP against a real
`conveyor server` and 2 `conveyor worker` processes, on SQLite and PostgreSQL.

Run from the repository root with the project's virtualenv active::

    python bench/saturation.py                                   # 50..800/s, 60 s each, both
    python bench/saturation.py --seconds 5 --rates 50,200 --backends sqlite

The load is open-loop: request i is due at ``start + i / rate`` and is sent then, whatever
the earlier requests are doing (asyncio + httpx, no cap on requests in flight), so a slow
server shows as latency and backlog, not as a lower offered rate. Latency is measured from
when a request was due (so a generator that falls behind is counted against the result,
never hidden) to the execution's ``finished_at`` in the database. Each rate gets a fresh
database, a fresh server and fresh workers, and the previous rate's backlog is drained
(every execution finished and checked) before it starts. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

PG_ADMIN_URL = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
RATES = (50, 100, 200, 400, 800)
BACKENDS = ("sqlite", "postgres")
NODES = 5
WORKSPACE = "default"
API = f"/api/v1/workspaces/{WORKSPACE}"
ADMIN = {"email": "bench@example.com", "password": "bench-saturation-password"}
CONVEYOR = [sys.executable, "-c", "from conveyor.cli.main import main; main()"]
SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
STALL_SECONDS = 120.0  # the drain fails when nothing finishes for this long
COMMITS_LINE = re.compile(
    r"write transactions (\d+), group commits (\d+) carrying (\d+) transitions"
)


class BenchError(Exception):
    """The benchmark could not produce a valid measurement."""


class Interrupted(BaseException):
    """SIGTERM/SIGHUP: unwind through every ``finally`` so the processes are stopped."""


def chain_definition() -> dict[str, Any]:
    """n1 -> ... -> n5, each a transform built from its predecessor (as bench/workers.py W1)."""
    nodes: list[dict[str, Any]] = [
        {"id": "n1", "type": "transform", "config": {"output": {"value": "{{ input.seed }}"}}}
    ]
    for i in range(2, NODES + 1):
        output = {"value": f"{{{{ nodes.n{i - 1}.output.value + 1 }}}}"}
        nodes.append(
            {
                "id": f"n{i}",
                "type": "transform",
                "needs": [f"n{i - 1}"],
                "config": {"output": output},
            }
        )
    return {"name": "saturation-chain", "description": "bench/saturation.py", "nodes": nodes}


# -- databases and processes ----------------------------------------------------------------


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


@contextmanager
def database(backend: str, tag: str) -> Iterator[str]:
    """A fresh, empty database for one rate; removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-sat-") as folder:
            yield f"sqlite:///{os.path.join(folder, 'bench.db')}"
        return
    name = f"conveyor_bench_sat_{os.getpid()}_{tag}"
    _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _pg_admin(f"CREATE DATABASE {name}")
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """The server (no embedded worker) and the worker processes; ``stop`` ends them all."""

    def __init__(self, url: str, log_dir: Path, workers: int, concurrency: int) -> None:
        self.url = url
        self.log_dir = log_dir
        self.workers = workers
        self.concurrency = concurrency
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CONVEYOR_DATABASE_URL": url,
            "CONVEYOR_ADMIN_EMAIL": ADMIN["email"],
            "CONVEYOR_ADMIN_PASSWORD": ADMIN["password"],
            "PYTHONUNBUFFERED": "1",
        }
        self.running: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def _start(self, name: str, args: list[str]) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [*CONVEYOR, *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.running.append((name, popen, log))

    def start_server(self) -> None:
        # --concurrency 0: the API only; the work is the 2 worker processes'. The server
        # migrates the fresh database and creates the first admin before /readyz answers.
        self._start(
            "server",
            ["server", "--host", "127.0.0.1", "--port", str(self.port), "--concurrency", "0"],
        )

    def start_workers(self) -> None:
        for i in range(self.workers):
            self._start(f"worker-{i}", ["worker", "--concurrency", str(self.concurrency)])

    def check_alive(self) -> None:
        for name, popen, log in self.running:
            if popen.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise BenchError(f"{name} exited with {popen.returncode}:\n{tail}")

    async def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            while True:
                self.check_alive()
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(f"the server was not ready within {within:g} s")
                await asyncio.sleep(0.2)
        while not all("started" in log.read_text() for n, _, log in self.running if n != "server"):
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"the workers did not start within {within:g} s")
            await asyncio.sleep(0.2)

    def stop(self, grace: float = 30.0) -> None:
        for _, popen, _ in self.running:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
        for _, popen, _ in self.running:
            try:
                popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=10)

    def group_commits(self) -> tuple[int, int, int]:
        """Summed over the workers' stop lines: write transactions, group commits,
        transitions."""
        total = [0, 0, 0]
        for name, _, log in self.running:
            if name.startswith("worker"):
                found = COMMITS_LINE.search(log.read_text(errors="replace"))
                if found:
                    total = [t + int(g) for t, g in zip(total, found.groups(), strict=True)]
        return total[0], total[1], total[2]


async def api_client(base_url: str, connections: int) -> httpx.AsyncClient:
    """Sign in as the first admin, create an API key, apply the workflow; a client that
    sends the key."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as session:
        login = await session.post("/api/v1/auth/login", json=ADMIN)
        if login.status_code != 200:
            raise BenchError(f"sign-in failed: {login.status_code} {login.text}")
        key = await session.post(
            f"{API}/api-keys",
            json={"name": "saturation", "role": "member"},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},
        )
        if key.status_code != 201:
            raise BenchError(f"API key not created: {key.status_code} {key.text}")
    client = httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key.json()['key']}"},
        timeout=httpx.Timeout(300.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )
    applied = await client.post(f"{API}/workflows", json={"definition": chain_definition()})
    if applied.status_code != 201:
        await client.aclose()
        raise BenchError(f"workflow not applied: {applied.status_code} {applied.text}")
    return client


# -- the load -------------------------------------------------------------------------------


@dataclass
class Sent:
    seed: int
    due: float  # wall-clock time the request was due
    sent: float = 0.0
    answered: float = 0.0
    status: int = 0
    execution_id: str | None = None
    failure: str = ""  # the client-side error, when the request got no answer


@dataclass
class Step:
    """One offered rate's measurements."""

    backend: str
    rate: int
    seconds: float
    offered: int = 0
    sent_in_window: int = 0
    accepted_in_window: int = 0
    refused: int = 0
    send_lag_p99_ms: float = 0.0
    answer_p50_ms: float = 0.0
    answer_p99_ms: float = 0.0
    finished_in_window: int = 0
    backlog_at_end: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    drain_seconds: float = 0.0
    unfinished_at_limit: int = 0  # accepted, or still unanswered, when the drain limit hit
    server_cpu: float = 0.0  # the server's CPU time over the window, in cores
    client_cpu: float = 0.0  # this process's (the load generator's)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at the start and the end
    write_transactions: int = 0
    group_commits: int = 0
    transitions: int = 0
    failures: str = ""  # requests refused (an HTTP status) or without an answer (the error)
    errors: list[str] = field(default_factory=list)  # accepted executions that went wrong


async def _post(client: httpx.AsyncClient, item: Sent) -> None:
    item.sent = time.time()
    try:
        answer = await client.post(
            f"{API}/workflows/saturation-chain/execute", json={"input": {"seed": item.seed}}
        )
        item.status = answer.status_code
        if answer.status_code == 202:
            item.execution_id = answer.json()["execution_id"]
    except httpx.HTTPError as exc:  # counted and named, never retried (not idempotent)
        item.status = -1
        item.failure = type(exc).__name__
    item.answered = time.time()


async def offer(
    client: httpx.AsyncClient,
    rate: int,
    seconds: float,
    limit: float,
    cpu: CpuMeter,
    connections: int,
) -> tuple[float, list[Sent]]:
    """Send ``rate * seconds`` requests, each queued when due; returns the window start and
    every request, once all are answered or ``limit`` seconds after the window (the rest are
    given up: their ``execution_id`` stays None).

    A due request waits in a FIFO for one of ``connections`` lanes (each sends one request
    at a time): the queue costs O(1) per request, where httpx's own pool queue slows the
    client down as it grows. When every lane waits for an answer, due requests wait in the
    FIFO (the server has that many requests already); their latency still counts from when
    they were due."""
    loop = asyncio.get_running_loop()
    due: asyncio.Queue[Sent | None] = asyncio.Queue()

    async def lane() -> None:
        while (item := await due.get()) is not None:
            await _post(client, item)

    lanes = [asyncio.create_task(lane()) for _ in range(connections)]
    start = loop.time() + 0.2
    wall_start = time.time() + (start - loop.time())
    total = int(rate * seconds)
    items = [Sent(seed=i, due=wall_start + i / rate) for i in range(total)]
    cpu.start()
    for i, item in enumerate(items):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait(item)
    await asyncio.sleep(max(start + seconds - loop.time(), 0))
    cpu.stop()
    for _ in lanes:
        due.put_nowait(None)
    _, pending = await asyncio.wait(
        lanes, timeout=max(wall_start + seconds + limit - time.time(), 1)
    )
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return wall_start, items


class CpuMeter:
    """CPU time of the server and of this process (the load generator) over the window."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.began = (0.0, 0.0, 0.0)
        self.server_share = 0.0  # of one core
        self.client_share = 0.0

    def _now(self) -> tuple[float, float, float]:
        with open(f"/proc/{self.server_pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        mine = os.times()
        return time.monotonic(), server, mine.user + mine.system

    def start(self) -> None:
        self.began = self._now()

    def stop(self) -> None:
        ended = self._now()
        wall = ended[0] - self.began[0]
        self.server_share = (ended[1] - self.began[1]) / wall
        self.client_share = (ended[2] - self.began[2]) / wall


# -- the database's view ----------------------------------------------------------------------


class Rows:
    """Raw driver access for the finished counts and the final check."""

    def __init__(self, backend: str, url: str) -> None:
        self.sqlite = None
        self.pg = None
        if backend == "sqlite":
            self.sqlite = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        else:
            self.pg = psycopg.connect(url, autocommit=True)

    def all(self, sql: str) -> list[tuple[Any, ...]]:
        if self.sqlite is not None:
            rows = self.sqlite.execute(sql).fetchall()
            self.sqlite.commit()
            return rows
        assert self.pg is not None
        return self.pg.execute(sql).fetchall()

    def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()
        if self.pg is not None:
            self.pg.close()


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return datetime.strptime(value, SQLITE_TIME_FORMAT).replace(tzinfo=UTC).timestamp()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def drain(rows: Rows, processes: Processes, expected: int, deadline: float) -> int:
    """Until every accepted execution is terminal or the wall-clock ``deadline``; returns
    how many were not. Fails when nothing finishes for STALL_SECONDS."""
    done, last_change = -1, time.monotonic()
    while True:
        processes.check_alive()
        (count,) = rows.all(
            "SELECT count(*) FROM executions WHERE status IN "
            "('succeeded', 'failed', 'cancelled', 'timed_out')"
        )[0]
        if count >= expected or time.time() > deadline:
            return max(expected - count, 0)
        if count != done:
            done, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            raise BenchError(f"drain stalled at {count} of {expected} executions finished")
        await asyncio.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    """Nearest rank (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


def measure(step: Step, wall_start: float, items: list[Sent], rows: Rows) -> None:
    end = wall_start + step.seconds
    step.offered = len(items)
    step.sent_in_window = sum(1 for i in items if 0 < i.sent <= end)
    step.accepted_in_window = sum(1 for i in items if i.execution_id and i.answered <= end)
    step.refused = sum(1 for i in items if i.execution_id is None and i.status != 0)
    lags = [(i.sent - i.due) * 1000 for i in items if i.sent > 0]
    step.send_lag_p99_ms = percentile(lags, 99) if lags else 0.0
    answers = [(i.answered - i.sent) * 1000 for i in items if i.execution_id]
    if answers:
        step.answer_p50_ms, step.answer_p99_ms = percentile(answers, 50), percentile(answers, 99)
    found = {
        r[0]: r[1:] for r in rows.all("SELECT id, status, finished_at, result FROM executions")
    }
    latencies: list[float] = []
    for item in items:
        if item.execution_id is None:
            continue
        row = found.get(item.execution_id)
        if row is None:
            step.errors.append(f"{item.execution_id}: accepted but not in the database")
            continue
        status, finished_at, result = row
        if status in ("queued", "running") and step.unfinished_at_limit:
            continue  # cut off by the drain limit: counted there
        expected = {f"n{NODES}": {"value": item.seed + NODES - 1}}
        if status != "succeeded" or _json(result) != expected:
            step.errors.append(f"{item.execution_id}: {status} {result!r}")
            continue
        finished = _epoch(finished_at)
        latencies.append((finished - item.due) * 1000)
        if finished <= end:
            step.finished_in_window += 1
    step.backlog_at_end = step.offered - step.finished_in_window
    if latencies:
        step.latency_p50_ms = percentile(latencies, 50)
        step.latency_p99_ms = percentile(latencies, 99)
    if step.refused:
        kinds = sorted({i.failure or str(i.status) for i in items if i.status not in (0, 202)})
        step.failures = f"{step.refused}: {', '.join(kinds)}"


async def run_step(args: argparse.Namespace, backend: str, rate: int, log_dir: Path) -> Step:
    step = Step(backend, rate, args.seconds)
    folder = log_dir / f"{backend}-{rate}"
    folder.mkdir()
    with database(backend, str(rate)) as url:
        processes = Processes(url, folder, args.workers, args.concurrency)
        try:
            processes.start_server()
            await processes.wait_ready()
            processes.start_workers()
            await processes.wait_ready()
            client = await api_client(processes.base_url, args.connections)
            rows = Rows(backend, url)
            try:
                load = os.getloadavg()[0]
                cpu = CpuMeter(processes.running[0][1].pid)
                wall_start, items = await offer(
                    client, rate, args.seconds, args.drain_limit, cpu, args.connections
                )
                step.server_cpu, step.client_cpu = cpu.server_share, cpu.client_share
                accepted = sum(1 for i in items if i.execution_id)
                unanswered = sum(1 for i in items if i.status == 0)
                limit = wall_start + args.seconds + args.drain_limit
                left = await drain(rows, processes, accepted, limit)
                step.unfinished_at_limit = left + unanswered
                step.drain_seconds = time.time() - (wall_start + args.seconds)
                step.load = (load, os.getloadavg()[0])
                measure(step, wall_start, items, rows)
            finally:
                await client.aclose()
                rows.close()
        finally:
            processes.stop()
        step.write_transactions, step.group_commits, step.transitions = processes.group_commits()
    return step


# -- the table ------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(steps: list[Step]) -> str:
    header = [
        "backend",
        "offered/s",
        "sent/s",
        "accepted/s",
        "answer p50 / p99 ms",
        "finished in window",
        "finished/s",
        "backlog at end",
        "completion p50 / p99 ms",
        "drain s",
        "unfinished at drain limit",
        "failed requests",
        "transitions per group commit",
        "server / client CPU",
        "load avg",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "--:|" * (len(header) - 2)]
    for s in steps:
        batch = s.transitions / s.group_commits if s.group_commits else None
        lines.append(
            "| "
            + " | ".join(
                [
                    s.backend,
                    str(s.rate),
                    _f(s.sent_in_window / s.seconds),
                    _f(s.accepted_in_window / s.seconds),
                    f"{_f(s.answer_p50_ms, 1)} / {_f(s.answer_p99_ms, 1)}",
                    f"{s.finished_in_window:,} of {s.offered:,}",
                    _f(s.finished_in_window / s.seconds),
                    f"{s.backlog_at_end:,}",
                    f"{_f(s.latency_p50_ms)} / {_f(s.latency_p99_ms)}",
                    _f(s.drain_seconds, 1),
                    f"{s.unfinished_at_limit:,}",
                    s.failures or "0",
                    _f(batch, 1),
                    f"{s.server_cpu:.0%} / {s.client_cpu:.0%}",
                    f"{s.load[0]:.1f} / {s.load[1]:.1f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _list(parser: argparse.ArgumentParser, raw: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [x.strip() for x in raw.split(",") if x.strip()]
    bad = [x for x in chosen if x not in allowed]
    if bad or not chosen:
        parser.error(f"choose from {', '.join(allowed)}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", default=",".join(map(str, RATES)), help="executions/s")
    parser.add_argument("--seconds", type=float, default=60.0, help="per rate (60)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="sqlite,postgres")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--concurrency", type=int, default=64, help="slots per worker (64)")
    parser.add_argument(
        "--drain-limit",
        type=float,
        default=900.0,
        metavar="S",
        help="after a window, wait at most this long for answers and finishes (900)",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=1000,
        help="requests in flight at most (the client's connections; 1000)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the measurements here")
    args = parser.parse_args(argv)
    args.backends = _list(parser, args.backends, BACKENDS)
    try:
        args.rates = [int(r) for r in args.rates.split(",")]
    except ValueError:
        parser.error("--rates: a comma-separated list of integers")
    if min(args.rates) < 1 or args.seconds <= 0 or min(args.workers, args.concurrency) < 1:
        parser.error("rates, seconds, workers and concurrency must be positive")
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _settings(backend: str) -> str:
    if backend == "sqlite":
        return "SQLite WAL, synchronous=FULL"
    with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
        found = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('server_version', 'fsync', 'synchronous_commit')"
            ).fetchall()
        )
    return (
        f"PostgreSQL {found['server_version']}, fsync={found['fsync']}, "
        f"synchronous_commit={found['synchronous_commit']}"
    )


async def run_all(args: argparse.Namespace) -> list[Step]:
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-sat-logs-") as logs:
        for backend in args.backends:
            print(f"{backend}: {_settings(backend)}", flush=True)
            for rate in args.rates:
                step = await run_step(args, backend, rate, Path(logs))
                steps.append(step)
                print(
                    f"  {rate}/s: finished {step.finished_in_window} of {step.offered} in the "
                    f"window, backlog {step.backlog_at_end}, completion p50 "
                    f"{_f(step.latency_p50_ms)} ms p99 {_f(step.latency_p99_ms)} ms, drained "
                    f"in {step.drain_seconds:.1f} s ({step.unfinished_at_limit} unfinished at the "
                    f"limit), server CPU {step.server_cpu:.0%}, client CPU {step.client_cpu:.0%}, "
                    f"load {step.load[0]:.1f}/{step.load[1]:.1f}, "
                    f"{len(step.errors)} problems",
                    flush=True,
                )
    return steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    print(
        f"{args.workers} worker processes x {args.concurrency} slots, server with no embedded "
        f"worker; {args.seconds:g} s per rate, fresh database per rate; cores: {os.cpu_count()}",
        flush=True,
    )
    steps = asyncio.run(run_all(args))
    if args.json:
        Path(args.json).write_text(json.dumps([s.__dict__ for s in steps], indent=1))
    print()
    print(table(steps))
    problems = [f"{s.backend} {s.rate}/s: {e}" for s in steps for e in s.errors[:5]]
    if problems:
        print("\nBENCHMARK FAILED:\n" + "\n".join(problems), file=sys.stderr)
        return 2
    cut = sum(s.unfinished_at_limit for s in steps)
    print(
        "\nevery finished execution succeeded with the expected result"
        + (f"; {cut} cut off by the drain limit, unchecked" if cut else " (all finished)")
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        sys.exit(2)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"interrupted ({str(exc) or 'SIGINT'}); processes stopped", file=sys.stderr)
        sys.exit(130)
