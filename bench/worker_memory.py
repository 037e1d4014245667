"""Resident memory of real `conveyor worker` processes, on SQLite and PostgreSQL: after
they have started and idled (the idle figure), and after they ran N five-step executions
(the W1 shape: 2 workers, concurrency 64 each; the peak, VmHWM, is the under-load figure),
and once they have idled again.

    python bench/worker_memory.py [--executions 500] [--workers 2] [--concurrency 64]
                                  [--backend sqlite|postgres|both] [--modules]

``--modules`` also lists, per top-level package, what an idle worker has imported (a
SIGUSR1 handler in the benchmark's launcher writes ``sys.modules``; nothing in Conveyor).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from conveyor.app import Conveyor, Submission
from conveyor.nodes.builtin import build_registry

ADMIN = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = "conveyor_bench_worker_memory"
STEPS = 5
IDLE_SECONDS = 3.0
# After the executions: idle long enough for a worker to give freed memory back (cli/worker.py).
SETTLE_SECONDS = 8.0
# The launcher: `conveyor worker`, plus (for --modules) a SIGUSR1 handler that writes the
# imported module names to the file named in CONVEYOR_BENCH_MODULES.
LAUNCHER = """
import os, signal, sys
def dump(*_):
    with open(os.environ["CONVEYOR_BENCH_MODULES"], "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
if os.environ.get("CONVEYOR_BENCH_MODULES"):
    signal.signal(signal.SIGUSR1, dump)
from conveyor.cli.main import main
main()
"""


def chain() -> dict[str, Any]:
    """n1 -> ... -> n5, each a transform of its predecessor (as W1 in bench/workers.py)."""
    nodes: list[dict[str, Any]] = [
        {"id": "n1", "type": "transform", "config": {"output": {"value": "{{ input.seed }}"}}}
    ]
    for i in range(2, STEPS + 1):
        output = {"value": f"{{{{ nodes.n{i - 1}.output.value + 1 }}}}"}
        nodes.append(
            {
                "id": f"n{i}",
                "type": "transform",
                "needs": [f"n{i - 1}"],
                "config": {"output": output},
            }
        )
    return {"name": "memory-chain", "nodes": nodes}


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def mappings(pid: int) -> dict[str, int]:
    """Resident kB per mapping (a file, ``[heap]``, ``[anon]``, ``[stack]``), from smaps."""
    found: collections.Counter[str] = collections.Counter()
    name = "[anon]"
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            parts = line.split()
            if parts[0] == "Rss:":
                found[name] += int(parts[1])
            elif not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else "[anon]"
    return dict(found)


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


@contextlib.contextmanager
def database(backend: str, directory: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{directory}/memory.db"
        return
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {PG_DB}")
    try:
        yield ADMIN.rsplit("/", 1)[0] + "/" + PG_DB
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def wait_started(log: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while b" started: " not in log.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def modules_of(process: subprocess.Popen[bytes], path: Path) -> list[str]:
    path.unlink(missing_ok=True)
    process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            return []
        time.sleep(0.05)
    time.sleep(0.1)
    return path.read_text().split()


def succeeded(url: str) -> int:
    query = "SELECT count(*) FROM executions WHERE status = 'succeeded'"
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return int(conn.execute(query).fetchone()[0])
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


async def submit(url: str, count: int) -> None:
    """Submit ``count`` executions of the chain in one batch."""
    app = await Conveyor.open(url, build_registry(), migrate=False)
    try:
        await app.apply(chain())
        await app.execute_many("memory-chain", [Submission({"seed": i}) for i in range(count)])
    finally:
        app.close()


def run_executions(url: str, count: int) -> float:
    """Submit ``count`` executions; return seconds until all succeeded."""
    started = time.perf_counter()
    asyncio.run(submit(url, count))
    while succeeded(url) < count:
        if time.perf_counter() - started > 300:
            raise SystemExit("the executions did not finish within 300 s")
        time.sleep(0.05)
    return time.perf_counter() - started


def measure(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-memory-") as directory,
        database(backend, directory) as url,
    ):
        asyncio.run(Conveyor.open(url, build_registry())).close()  # migrate before the workers
        modules_file = Path(directory) / "modules.txt"
        env = {**os.environ, "CONVEYOR_DATABASE_URL": url}
        if args.modules:
            env["CONVEYOR_BENCH_MODULES"] = str(modules_file)
        processes: list[subprocess.Popen[bytes]] = []
        logs: list[Path] = []
        try:
            for i in range(args.workers):
                logs.append(Path(directory) / f"worker-{i}.log")
                with logs[-1].open("wb") as log:
                    processes.append(
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-c",
                                LAUNCHER,
                                "worker",
                                "--concurrency",
                                str(args.concurrency),
                            ],
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )
            for process, log in zip(processes, logs, strict=True):
                wait_started(log, process)
            time.sleep(IDLE_SECONDS)
            idle = [status_kb(p.pid, "VmRSS") for p in processes]
            idle_maps = mappings(processes[0].pid)
            modules = modules_of(processes[0], modules_file) if args.modules else []
            seconds = run_executions(url, args.executions)
            loaded = [status_kb(p.pid, "VmRSS") for p in processes]
            peak = [status_kb(p.pid, "VmHWM") for p in processes]
            loaded_maps = mappings(processes[0].pid)
            time.sleep(SETTLE_SECONDS)
            settled = [status_kb(p.pid, "VmRSS") for p in processes]
            threads = status_kb(processes[0].pid, "Threads")
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
    return {
        "backend": backend,
        "idle_rss_mb": [mb(k) for k in idle],
        "after_rss_mb": [mb(k) for k in loaded],
        "peak_rss_mb": [mb(k) for k in peak],
        "settled_rss_mb": [mb(k) for k in settled],
        "executions": args.executions,
        "seconds": round(seconds, 2),
        "modules": modules,
        "threads": threads,
        "mappings": {
            name: (idle_maps.get(name, 0), loaded_maps.get(name, 0))
            for name in sorted(loaded_maps, key=lambda n: -loaded_maps[n])[:8]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--modules", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--mappings", action="store_true", help="resident memory by mapping")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        result = measure(backend, args)
        if args.json:
            print(json.dumps(result))
            continue
        print(
            f"{backend:8} idle RSS {'/'.join(result['idle_rss_mb'])} MB, after "
            f"{result['executions']} executions in {result['seconds']} s: RSS "
            f"{'/'.join(result['after_rss_mb'])} MB, peak {'/'.join(result['peak_rss_mb'])} MB, "
            f"{SETTLE_SECONDS:g} s later {'/'.join(result['settled_rss_mb'])} MB"
        )
        if args.mappings:
            print(f"  worker 0, {result['threads']} threads; resident MB idle -> after:")
            for name, (before, after) in result["mappings"].items():
                print(f"    {mb(before):>6} -> {mb(after):>6}  {name}")
        if result["modules"]:
            counts = collections.Counter(m.split(".")[0] for m in result["modules"])
            print(
                f"  {len(result['modules'])} modules:",
                ", ".join(f"{name} {n}" for name, n in counts.most_common() if n > 2),
            )


if __name__ == "__main__":
    main()
