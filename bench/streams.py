"""Live streams benchmark: does a server slow down when people watch?

Run from the repository root with the project's virtualenv active::

    python bench/streams.py                          # SQLite and PostgreSQL, 0 and 100 streams
    python bench/streams.py --backends sqlite --executions 300 --repeat 1
    python bench/streams.py --mix all                # every tab on the executions monitor

A real ``conveyor server`` (embedded worker, default slots) per backend. 16 HTTP clients
submit executions of a 5-step transform chain as fast as the server takes them; the rate is
measured with no stream open and with 100 open Server-Sent Event streams: 90 workspace
streams, one per open tab, asking for what the tab's page shows (``--mix pages``, default:
a third on the executions monitor, every event; a third on a workflow's page, executions'
events; a third on any other page, the "N running" counts and inbox events; ``--mix all``:
every tab on the monitor), and 10 execution streams that each follow a recently submitted
execution to its end, then the next. The phases alternate
(0, 100, 100, 0, ...), after a phase that is not measured, so drift over the run falls on
both. Then, with the server idle, the
delay from a commit in ANOTHER process (this one, through the Python API) to the message
on an SSE stream. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry

PG_ADMIN_URL = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = f"conveyor_bench_s_{os.getpid()}"
SERVER_COMMAND = [sys.executable, "-c", "from conveyor.cli.main import main; main()", "server"]
ADMIN = {"email": "bench@example.com", "password": "bench-password-long-enough"}
API = "/api/v1/workspaces/default"
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
WATCH_SECONDS = 0.05  # how often the finished count is checked
SIGNALS = 50  # cross-process latency samples
SCRAPE = "bench-scrape-token"  # the server's /metrics: what its live feed and streams did


class BenchError(Exception):
    """The benchmark could not produce a valid measurement."""


def chain() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"id": "n1", "type": "transform", "config": {"output": {"value": "{{ input.seed }}"}}}
    ]
    for i in range(2, 6):
        output = {"value": f"{{{{ nodes.n{i - 1}.output.value + 1 }}}}"}
        config = {"output": output}
        nodes.append({"id": f"n{i}", "type": "transform", "needs": [f"n{i - 1}"], "config": config})
    return {"name": "bench-chain", "nodes": nodes}


WAITING = {
    "name": "bench-waits",
    "nodes": [{"id": "w", "type": "wait_for_event", "config": {"event": "never", "timeout": "1h"}}],
}


# -- databases and the server -----------------------------------------------------------------


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql)


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-s-") as folder:
            yield f"sqlite:///{os.path.join(folder, 'bench.db')}"
        return
    _pg_admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
    _pg_admin(f"CREATE DATABASE {PG_DATABASE}")
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{PG_DATABASE}"
    finally:
        _pg_admin(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


class Probe:
    """A raw driver connection for cheap polls of the executions table."""

    def __init__(self, url: str) -> None:
        self.sqlite: sqlite3.Connection | None = None
        self.pg: psycopg.Connection[Any] | None = None
        if url.startswith("sqlite:///"):
            self.sqlite = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        else:
            self.pg = psycopg.connect(url, autocommit=True)

    def by_status(self) -> dict[str, int]:
        sql = "SELECT status, count(*) FROM executions GROUP BY status"
        rows = self.sqlite.execute(sql) if self.sqlite else self.pg.execute(sql)  # type: ignore[union-attr]
        return {str(s): int(n) for s, n in rows.fetchall()}

    def close(self) -> None:
        for conn in (self.sqlite, self.pg):
            if conn is not None:
                conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    key: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def live(self) -> dict[str, float]:
        """The server's ``conveyor_live_*`` counters (``/metrics``), by short name."""
        text = httpx.get(
            f"{self.base}/metrics", headers={"Authorization": f"Bearer {SCRAPE}"}, timeout=10
        ).text
        found = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name.startswith("conveyor_live_") and name.endswith("_total"):
                found[name.removeprefix("conveyor_live_").removesuffix("_total")] = float(value)
        return found

    def cpu_seconds(self) -> tuple[float, float]:
        """User and system CPU seconds of the server process so far."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick


@contextlib.contextmanager
def server(url: str, log_dir: str, concurrency: int = 8) -> Iterator[Server]:
    port = free_port()
    log = Path(log_dir) / f"server-{port}.log"
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": url,
        "CONVEYOR_ADMIN_EMAIL": ADMIN["email"],
        "CONVEYOR_ADMIN_PASSWORD": ADMIN["password"],
        "CONVEYOR_METRICS_TOKEN": SCRAPE,
    }
    command = [*SERVER_COMMAND, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--concurrency", str(concurrency)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Server(url, port, log, process)
    try:
        _ready(running)
        running.key = _api_key(running)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _ready(running: Server) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise BenchError(f"server exited:\n{running.log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{running.base}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchError("server not ready within 60 s")


def _api_key(running: Server) -> str:
    with httpx.Client(base_url=running.base, timeout=10) as session:
        login = session.post("/api/v1/auth/login", json=ADMIN)
        login.raise_for_status()
        created = session.post(
            f"{API}/api-keys",
            json={"name": "bench", "role": "owner"},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},  # a cookie session's writes
        )
        created.raise_for_status()
        key = str(created.json()["key"])
    with httpx.Client(base_url=running.base, timeout=10) as client:
        headers = {"Authorization": f"Bearer {key}"}
        for definition in (chain(), WAITING):
            client.post(f"{API}/workflows", json={"definition": definition}, headers=headers)
    return key


# -- stream readers (a child process, so parsing never delays the submitters' loop) -----------


async def _open(port: int, key: str, path: str) -> asyncio.StreamReader:
    """A raw HTTP/1.1 stream request (no client library: reading costs next to nothing),
    returned once its ``connected`` message came (the stream follows the feed from then)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise BenchError(f"stream {path}: {head[:200]!r}")
    await reader.readuntil(b"event: connected")
    _WRITERS[reader] = writer  # a writer collected as garbage closes the connection
    return reader


_WRITERS: dict[asyncio.StreamReader, asyncio.StreamWriter] = {}


TAIL = 4096  # bytes of a stream kept: its last counts message is in them


class Counted:
    """Occurrences of ``pattern`` in a byte stream read in arbitrary pieces (``expected`` of
    them by the end of a phase), and the stream's last bytes."""

    def __init__(self, pattern: bytes, expected: int = 0) -> None:
        self.pattern = pattern
        self.expected = expected
        self.count = 0
        self.bytes = 0
        self.pieces = 0  # reads that returned data: about one per write of the server
        self.changed = asyncio.Event()
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        data = self._tail[-(len(self.pattern) - 1) :] + chunk
        self.count += data.count(self.pattern)
        self._tail = (self._tail + chunk)[-TAIL:]
        self.bytes += len(chunk)
        self.pieces += 1
        self.changed.set()

    def quiet(self) -> bool:
        """Whether the last ``counts`` message so far says nothing is queued, running or
        waiting (what every stream must end with once the phase is over)."""
        at = self._tail.rfind(b"event: counts")
        if at < 0:
            return False
        data = self._tail[at:].split(b"data: ", 1)[-1].split(b"\n", 1)[0]
        try:
            return not any(json.loads(data).values())
        except ValueError:
            return False


async def _workspace_reader(
    port: int, key: str, types: str | None, counted: Counted, connected: Any
) -> None:
    query = "" if types is None else f"?types={types}"
    reader = await _open(port, key, f"{API}/stream{query}")
    with connected.get_lock():
        connected.value += 1
    while chunk := await reader.read(65536):
        counted.feed(chunk)


async def _all_seen(counters: list[Counted], within: float) -> None:
    """Until every workspace stream has seen the executions succeed that it was to see and
    quiet counts, or ``within`` seconds."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            for counter in counters:
                while counter.count < counter.expected or not counter.quiet():
                    counter.changed.clear()
                    await counter.changed.wait()


async def _execution_viewer(port: int, key: str, ids: Any, counted: Counted) -> None:
    """Follow a recently submitted execution to its end, then the next one."""
    loop = asyncio.get_running_loop()
    while True:
        execution_id = await loop.run_in_executor(None, ids.get)
        if execution_id is None:
            return
        reader = await _open(port, key, f"{API}/executions/{execution_id}/stream")
        while chunk := await reader.read(65536):
            counted.feed(chunk)


def page_types(mix: str, workspace_streams: int) -> list[str | None]:
    """What each workspace stream asks for (``?types=``, None: every event), as the
    dashboard's pages do: ``all`` is every tab on the executions monitor (every event);
    ``pages`` a third each on the monitor, on a workflow's page (executions' events) and on
    any other page (its "N running" indicator and inbox: the counts and inbox events)."""
    if mix == "all":
        return [None] * workspace_streams
    kinds = [None, "execution.,notification.,task.", "notification.,task."]
    return [kinds[i % 3] for i in range(workspace_streams)]


def readers_main(
    port: int, key: str, streams: int, count: int, ids: Any, connected: Any, out: Any, mix: str
) -> None:
    async def main() -> None:
        viewers = streams // 10
        types = page_types(mix, streams - viewers)
        succeeded = [
            Counted(b"event: execution.succeeded", count if t is None or "execution." in t else 0)
            for t in types
        ]
        completes = Counted(b"event: complete")
        tasks = [
            asyncio.create_task(_workspace_reader(port, key, t, c, connected))
            for t, c in zip(types, succeeded, strict=True)
        ]
        views = [
            asyncio.create_task(_execution_viewer(port, key, ids, completes))
            for _ in range(viewers)
        ]
        await asyncio.gather(*views)  # until the parent sends one None per viewer
        await _all_seen(succeeded, within=30)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out.put(
            {
                # an indicator-only stream is not sent executions' events: it counts as
                # having seen them all once its counts end quiet
                "workspace_succeeded": [
                    (c.count if c.expected else count) if c.quiet() else 0 for c in succeeded
                ],
                "completes": completes.count,
                "bytes": sum(c.bytes for c in succeeded) + completes.bytes,
                "pieces": statistics.mean(c.pieces for c in succeeded),
                "cpu": time.process_time(),
            }
        )

    asyncio.run(main())


# -- the throughput phase ------------------------------------------------------------------------


@dataclass
class Phase:
    streams: int
    executions: int
    seconds: float
    server_cpu: tuple[float, float]  # user, system
    live: dict[str, float]  # the server's conveyor_live_* counters over the phase
    delivered: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.executions / self.seconds


async def submit(running: Server, count: int, clients: int, ids: Any, viewers: int) -> None:
    numbers = iter(range(count))
    headers = {"Authorization": f"Bearer {running.key}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=running.base, headers=headers, limits=limits, timeout=60
    ) as client:

        async def one_client() -> None:
            for n in numbers:
                response = await client.post(
                    f"{API}/workflows/bench-chain/execute", json={"input": {"seed": n}}
                )
                if response.status_code != 202:
                    raise BenchError(f"execute: {response.status_code} {response.text[:300]}")
                if viewers and n % 25 == 0:
                    ids.put(response.json()["execution_id"])

        await asyncio.gather(*(one_client() for _ in range(clients)))


def settle(running: Server, within: float = 120) -> None:
    """Until every execution so far has finished (the warm-up's, the last phase's)."""
    probe = Probe(running.url)
    deadline = time.monotonic() + within
    try:
        while any(probe.by_status().get(s, 0) for s in ("queued", "running")):
            if time.monotonic() > deadline:
                raise BenchError(f"executions still unfinished after {within:g} s")
            time.sleep(WATCH_SECONDS)
    finally:
        probe.close()


def run_phase(running: Server, streams: int, count: int, clients: int, mix: str) -> Phase:
    settle(running)
    context = multiprocessing.get_context("spawn")
    ids = context.Queue()
    connected = context.Value("i", 0)
    out = context.Queue()
    child = None
    if streams:
        child = context.Process(
            target=readers_main,
            args=(running.port, running.key, streams, count, ids, connected, out, mix),
        )
        child.start()
        deadline = time.monotonic() + 60
        while connected.value < streams - streams // 10:
            if time.monotonic() > deadline or not child.is_alive():
                raise BenchError(f"only {connected.value} streams connected")
            time.sleep(0.05)
    probe = Probe(running.url)
    try:
        before = probe.by_status()
        done_before = sum(before.get(s, 0) for s in TERMINAL)
        cpu = running.cpu_seconds()
        live = running.live()
        started = time.perf_counter()
        asyncio.run(submit(running, count, clients, ids, streams // 10))
        while sum(probe.by_status().get(s, 0) for s in TERMINAL) - done_before < count:
            if running.process.poll() is not None:
                raise BenchError("the server exited")
            time.sleep(WATCH_SECONDS)
        seconds = time.perf_counter() - started
        user, system = running.cpu_seconds()
        cpu = (user - cpu[0], system - cpu[1])
        live = {name: value - live.get(name, 0.0) for name, value in running.live().items()}
        after = probe.by_status()
    finally:
        probe.close()
    succeeded = after.get("succeeded", 0) - before.get("succeeded", 0)
    if succeeded != count:
        raise BenchError(f"{succeeded} of {count} executions succeeded: {after}")
    phase = Phase(streams, count, seconds, cpu, live)
    if child is not None:
        phase.delivered = _stop_readers(child, ids, out, streams, count)
    return phase


def _stop_readers(child: Any, ids: Any, out: Any, streams: int, count: int) -> dict[str, Any]:
    """Let the workspace streams receive the last events (up to 30 s), then stop them."""
    for _ in range(streams // 10):
        ids.put(None)
    try:
        delivered: dict[str, Any] = out.get(timeout=120)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
    seen = delivered["workspace_succeeded"]
    delivered["complete"] = sum(1 for n in seen if n >= count)
    return delivered


# -- cross-process delay ---------------------------------------------------------------------


async def cross_process_delay(running: Server) -> list[float]:
    """Milliseconds from the start of a signal committed by this process to its message on
    an execution stream served by the server."""
    headers = {"Authorization": f"Bearer {running.key}"}
    async with httpx.AsyncClient(base_url=running.base, headers=headers) as client:
        started = await client.post(f"{API}/workflows/bench-waits/execute", json={"input": {}})
        execution_id = started.json()["execution_id"]
    app = await Conveyor.open(running.url, build_registry())
    arrivals: list[float] = []
    arrived = asyncio.Event()

    async def read() -> None:
        reader = await _open(running.port, running.key, f"{API}/executions/{execution_id}/stream")
        counted = Counted(b"event: execution.signal")
        while chunk := await reader.read(65536):
            before = counted.count
            counted.feed(chunk)
            arrivals.extend([time.perf_counter()] * (counted.count - before))
            if counted.count > before:
                arrived.set()

    task = asyncio.create_task(read())
    delays: list[float] = []
    try:
        await asyncio.sleep(1)  # connected, and the server idle
        for n in range(SIGNALS):
            arrived.clear()
            sent = time.perf_counter()
            await app.signal(execution_id, f"ping{n}", {})
            async with asyncio.timeout(10):
                while len(arrivals) <= n:
                    await arrived.wait()
                    arrived.clear()
            delays.append((arrivals[n] - sent) * 1000)
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        app.close()
    return delays


# -- report ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


def report(backend: str, phases: list[Phase], delays: list[float], streams: int) -> None:
    print(f"\n## {backend}\n")
    print(
        "| streams | executions/s (median) | runs "
        "| server CPU s per 100 executions (user + system) |"
    )
    print("|--:|--:|:--|--:|")
    medians = {}
    for count in (0, streams):
        runs = [p for p in phases if p.streams == count]
        medians[count] = statistics.median(p.rate for p in runs)
        user = statistics.median(p.server_cpu[0] / p.executions * 100 for p in runs)
        system = statistics.median(p.server_cpu[1] / p.executions * 100 for p in runs)
        listed = ", ".join(f"{p.rate:.1f}" for p in runs)
        print(f"| {count} | {medians[count]:.1f} | {listed} | {user:.2f} + {system:.2f} |")
    change = (medians[streams] / medians[0] - 1) * 100
    print(f"\nwith {streams} streams: {change:+.1f} % executions/s")
    for p in phases:
        if p.delivered:
            d = p.delivered
            print(
                f"streams run: {d['complete']}/{len(d['workspace_succeeded'])} workspace streams "
                "saw every execution succeed it asked for and ended with quiet counts, "
                f"{d['completes']} execution streams completed, "
                f"{d['bytes'] / 1e6:.1f} MB in {d['pieces']:.0f} pieces per workspace stream "
                f"({d['pieces'] / p.seconds:.1f}/s); the readers' process used "
                f"{d['cpu'] / p.executions * 100:.2f} CPU s per 100 executions (on the "
                "server's cores here; a viewer's browser elsewhere)"
            )
    watched = [p for p in phases if p.streams]
    writes = sum(p.live["writes"] for p in watched)
    seconds = sum(p.seconds for p in watched)
    live_cpu = sum(p.live["cpu_seconds"] for p in watched)
    reads = sum(p.live["reads"] for p in watched)
    print(
        f"the server's live delivery with {streams} streams (its /metrics): "
        f"{writes / seconds:.0f} writes/s, {reads / seconds:.1f} feed reads/s "
        f"({sum(p.live['read_seconds'] for p in watched) / max(reads, 1) * 1000:.1f} ms each), "
        f"{live_cpu / max(writes, 1) * 1e6:.0f} us of event-loop CPU per write (fan-out, "
        f"rendering and writing): {live_cpu / seconds * 100:.1f} % of a core, "
        f"{live_cpu / sum(sum(p.server_cpu) for p in watched) * 100:.1f} % of the server's CPU"
    )
    print("\nanother process's commit -> SSE message (a server without a worker):")
    print(
        f"p50 {percentile(delays, 50):.1f} ms, "
        f"p99 {percentile(delays, 99):.1f} ms, max {max(delays):.1f} ms ({len(delays)} signals)"
    )


def tracebacks(running: Server) -> None:
    text = running.log.read_text(errors="replace")
    if "Traceback" in text:
        print(f"\nthe server logged {text.count('Traceback')} tracebacks; the first:")
        block = text[text.index("Traceback") :].split("\nINFO:", 1)[0]
        print("\n".join(block.splitlines()[-25:]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--executions", type=int, default=1000, help="per phase")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2, help="phases of each kind")
    parser.add_argument(
        "--mix",
        choices=("pages", "all"),
        default="pages",
        help="what the workspace streams ask for: as the dashboard's pages do, a third each "
        "on the monitor, a workflow page and any other page (default); or every event, "
        "every tab on the monitor",
    )
    args = parser.parse_args()
    order = ([0, args.streams, args.streams, 0] * args.repeat)[: 2 * args.repeat]
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-logs-") as logs:
        for backend in args.backends.split(","):
            with database(backend) as url:
                with server(url, logs) as running:
                    # Warm up with a whole phase, not measured: the first phase on a fresh
                    # database ran 20-60 % faster than any later one of either kind, which
                    # made the streams look dearer than they are.
                    run_phase(running, 0, args.executions, args.clients, args.mix)
                    phases = []
                    for streams in order:
                        phase = run_phase(running, streams, args.executions, args.clients, args.mix)
                        print(f"{backend}: {streams} streams: {phase.rate:.1f} executions/s")
                        phases.append(phase)
                    tracebacks(running)
                # No embedded worker: nothing in the server itself commits, so only the
                # cross-process path (NOTIFY, or the SQLite events file) can bring the event.
                with server(url, logs, concurrency=0) as idle:
                    delays = asyncio.run(cross_process_delay(idle))
                    tracebacks(idle)
                report(backend, phases, delays, args.streams)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        sys.exit(2)
