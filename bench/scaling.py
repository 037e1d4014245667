"""Scaling runs: W1 and W3 with 1, 2 and 4 `conveyor worker` processes against one database,
the group-commit batch sizes they reach, and what one PostgreSQL server commits at most.

Run from the repository root with the project's virtualenv active::

    python bench/scaling.py                               # PostgreSQL and SQLite, 1/2/4 workers
    python bench/scaling.py --backends postgres --workers 1,4 --repeat 1

Three parts, each printed as a table:

1. Throughput: ``bench/workers.py --workers N --workloads w1,w3`` run as a subprocess for
   each N (claim to finish: everything is enqueued before the workers start).
2. Commits: the same workloads again, with worker processes this script starts, so it can
   read each worker's stop line (``write transactions ..., group commits ... carrying ...
   transitions``, counted by ``Store.commits``) and, on PostgreSQL, the database's
   ``xact_commit`` (every transaction, reads included) over the run.
3. The ceiling: ``pgbench`` committing one-row inserts, 1 client and 8 clients (fsync and
   synchronous_commit as the server has them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from saturation import (  # bench/ is not a package
    PG_ADMIN_URL,
    BenchError,
    Interrupted,
    Processes,
    database,
)
from workers import (
    Probe,
    chain_definition,
    chain_result,
    fanout_definition,
    fanout_result,
)

from conveyor import Submission
from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry

BENCH = Path(__file__).resolve().parent
WORKLOADS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[int], Any], int, int]] = {
    # name: definition, expected result, executions, steps each
    "w1": (chain_definition, chain_result, 500, 5),
    "w3": (fanout_definition, fanout_result, 20, 52),
}


# -- part 1: bench/workers.py -----------------------------------------------------------------


def throughput(args: argparse.Namespace, backend: str, workers: int) -> list[dict[str, Any]]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            sys.executable,
            args.harness,
            "--json",
            out.name,
            "--workers",
            str(workers),
            "--concurrency",
            str(args.concurrency),
            "--workloads",
            args.workloads,
            "--backends",
            backend,
            "--repeat",
            str(args.repeat),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(
                f"bench/workers.py failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        results: list[dict[str, Any]] = json.loads(Path(out.name).read_text())
    return results


# -- part 2: commits --------------------------------------------------------------------------


@dataclass
class Commits:
    backend: str
    workload: str
    workers: int
    steps: int
    seconds: float  # first step started -> last execution finished
    write_transactions: int
    group_commits: int
    transitions: int
    pg_commits: int | None  # pg_stat_database.xact_commit over the run, reads included

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds

    @property
    def per_commit(self) -> float:
        return self.transitions / self.group_commits if self.group_commits else 0.0


def _xact_commit(name: str) -> int:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row else 0


async def _enqueue(url: str, definition: dict[str, Any], n: int) -> None:
    app = await Conveyor.open(url, build_registry())
    try:
        await app.apply(definition)
        for first in range(0, n, 250):
            items = [Submission({"seed": i}) for i in range(first, min(first + 250, n))]
            results = await app.execute_many(definition["name"], items)
            if any(isinstance(r, Exception) for r in results):
                raise BenchError(f"enqueue failed: {results}")
    finally:
        app.close()


def _wait_finished(probe: Probe, processes: Processes, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while probe.terminal_count() < n:
        processes.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"not finished within {timeout:g} s")
        time.sleep(0.05)


def _check(probe: Probe, n: int, steps_each: int, expected: Callable[[int], Any]) -> float:
    """Every execution succeeded with its result; returns first start -> last finish, s."""
    rows = probe.rows(
        "SELECT e.status, i.input, e.result, e.started_at, e.finished_at "
        "FROM executions e JOIN execution_inputs i ON i.execution_id = e.id"
    )
    if len(rows) != n:
        raise BenchError(f"{len(rows)} executions, expected {n}")
    for status, raw_input, result, _, _ in rows:
        seed = probe.json(raw_input)["seed"]
        if status != "succeeded" or probe.json(result) != expected(seed):
            raise BenchError(f"execution {seed}: {status} {result!r}")
    steps = probe.value("SELECT count(*) FROM steps WHERE status = 'succeeded'")
    if steps != n * steps_each:
        raise BenchError(f"{steps} succeeded steps, expected {n * steps_each}")
    first = min(probe.time(r[3]) for r in rows)  # type: ignore[type-var]
    last = max(probe.time(r[4]) for r in rows)  # type: ignore[type-var]
    return (last - first).total_seconds()  # type: ignore[operator]


async def commits(
    backend: str, workload: str, workers: int, concurrency: int, log_dir: Path
) -> Commits:
    definition, expected, n, steps_each = WORKLOADS[workload]
    folder = Path(tempfile.mkdtemp(dir=log_dir))
    with database(backend, f"c{workload}{workers}") as url:
        await _enqueue(url, definition(), n)
        name = url.rsplit("/", 1)[1]
        before = _xact_commit(name) if backend == "postgres" else 0
        processes = Processes(url, folder, workers, concurrency)
        probe = Probe(backend, url)
        try:
            processes.start_workers()
            _wait_finished(probe, processes, n, timeout=600)
        finally:
            processes.stop()
        try:
            seconds = _check(probe, n, steps_each, expected)
        finally:
            probe.close()
        pg = _xact_commit(name) - before if backend == "postgres" else None
        write, group, transitions = processes.group_commits()
    return Commits(
        backend, workload, workers, n * steps_each, seconds, write, group, transitions, pg
    )


# -- part 3: pgbench --------------------------------------------------------------------------


def pgbench(clients: int, seconds: int, notify: bool) -> float:
    """Transactions per second of one-row inserts, each its own commit (with ``notify``,
    each also sends a NOTIFY, as every Conveyor write transaction does)."""
    name = f"conveyor_bench_pgbench_{os.getpid()}"
    admin = psycopg.connect(PG_ADMIN_URL, autocommit=True)
    try:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
        target = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v int)")
        with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
            script.write("BEGIN;\nINSERT INTO t (v) VALUES (1);\n")
            script.write("NOTIFY bench_channel;\nCOMMIT;\n" if notify else "COMMIT;\n")
            script.flush()
            done = subprocess.run(
                ["pgbench", "-n", "-c", str(clients), "-j", str(min(clients, 2)), "-T",
                 str(seconds), "-f", script.name, target],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
        for line in done.stdout.splitlines():
            if line.startswith("tps ="):
                return float(line.split()[2])
        raise BenchError(f"pgbench: {done.stdout[-1000:]}{done.stderr[-1000:]}")
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


# -- tables -----------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def throughput_table(rows: list[tuple[str, int, list[dict[str, Any]]]]) -> str:
    names = list(dict.fromkeys(r["workload"] for _, _, results in rows for r in results))
    header = "".join(f" {n.upper()} executions/s | {n.upper()} steps/s |" for n in names)
    lines = ["| backend | workers |" + header, "|---|--:|" + "--:|--:|" * len(names)]
    for backend, workers, results in rows:
        cells = []
        for workload in names:
            mine = [r for r in results if r["workload"] == workload]
            cells += [
                f"{_median([r['executions'] / r['run_seconds'] for r in mine]):,.0f}",
                f"{_median([r['steps'] / r['run_seconds'] for r in mine]):,.0f}",
            ]
        lines.append(f"| {backend} | {workers} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def commits_table(found: list[Commits]) -> str:
    lines = [
        "| backend | workload | workers | steps/s | write transactions | group commits "
        "| transitions per group commit | steps per write transaction | PG commits/s "
        "(all, reads included) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for c in found:
        pg = "-" if c.pg_commits is None else f"{c.pg_commits / c.seconds:,.0f}"
        lines.append(
            f"| {c.backend} | {c.workload.upper()} | {c.workers} | {c.steps_per_second:,.0f} "
            f"| {c.write_transactions:,} | {c.group_commits:,} | {c.per_commit:.1f} "
            f"| {c.steps / max(c.write_transactions, 1):.2f} | {pg} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts (1,2,4)")
    parser.add_argument("--concurrency", type=int, default=64, help="slots per worker (64)")
    parser.add_argument("--repeat", type=int, default=1, help="bench/workers.py --repeat (1)")
    parser.add_argument("--workloads", default="w1,w3", help="bench/workers.py --workloads (w1,w3)")
    parser.add_argument(
        "--harness", default=str(BENCH / "workers.py"), help="the bench/workers.py to run"
    )
    parser.add_argument("--pgbench-seconds", type=int, default=10, help="0: skip pgbench")
    parser.add_argument("--skip-throughput", action="store_true", help="parts 2 and 3 only")
    parser.add_argument("--json", metavar="FILE", help="also write the measurements here")
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    args.workers = [int(w) for w in args.workers.split(",")]
    if set(args.backends) - {"postgres", "sqlite"} or min(args.workers) < 1:
        parser.error("--backends: postgres and/or sqlite; --workers: positive integers")
    return args


def _interrupt(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    report: dict[str, Any] = {"load_at_start": os.getloadavg()[0]}
    rows: list[tuple[str, int, list[dict[str, Any]]]] = []
    if not args.skip_throughput:
        for backend in args.backends:
            for workers in args.workers:
                rows.append((backend, workers, throughput(args, backend, workers)))
                print(f"bench/workers.py {backend} --workers {workers}: done", flush=True)
        report["throughput"] = [{"backend": b, "workers": w, "results": r} for b, w, r in rows]
    found: list[Commits] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-scaling-") as logs:
        for backend in args.backends:
            for workload in WORKLOADS:
                for workers in args.workers:
                    c = asyncio.run(
                        commits(backend, workload, workers, args.concurrency, Path(logs))
                    )
                    found.append(c)
                    print(
                        f"{backend} {workload} x{workers}: {c.steps_per_second:,.0f} steps/s, "
                        f"{c.per_commit:.1f} transitions per group commit",
                        flush=True,
                    )
    report["commits"] = [c.__dict__ for c in found]
    bench_tps: dict[tuple[int, bool], float] = {}
    if args.pgbench_seconds > 0 and "postgres" in args.backends:
        for notify in (False, True):
            for clients in (1, 8):
                bench_tps[clients, notify] = pgbench(clients, args.pgbench_seconds, notify)
        report["pgbench_tps"] = [
            {"clients": c, "notify": n, "tps": tps} for (c, n), tps in bench_tps.items()
        ]
    report["load_at_end"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    show(report, rows, found, bench_tps)
    return 0


def show(
    report: dict[str, Any],
    rows: list[tuple[str, int, list[dict[str, Any]]]],
    found: list[Commits],
    bench_tps: dict[tuple[int, bool], float],
) -> None:
    start, end = report["load_at_start"], report["load_at_end"]
    print(f"\nload average {start:.1f} at the start, {end:.1f} at the end")
    if rows:
        print("\nthroughput (bench/workers.py, claim to finish, median of --repeat)\n")
        print(throughput_table(rows))
    print("\ncommits (this script's own run of the same workloads)\n")
    print(commits_table(found))
    if bench_tps:
        print("\npgbench, one-row INSERT per transaction (the commit ceiling)\n")
        print("| clients | NOTIFY in the transaction | commits/s |\n|--:|---|--:|")
        for (clients, notify), tps in bench_tps.items():
            print(f"| {clients} | {'yes' if notify else 'no'} | {tps:,.0f} |")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        sys.exit(2)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"interrupted ({str(exc) or 'SIGINT'}); processes stopped", file=sys.stderr)
        sys.exit(130)
