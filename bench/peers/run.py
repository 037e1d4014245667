"""Conveyor against its peers (Celery, DBOS, Procrastinate): every workload, one table.

Run in Conveyor's venv, after ``bash bench/peers/setup.sh``:

    python bench/peers/run.py                 # every workload and peer (~13-30 min)
    python bench/peers/run.py --all           # also the saturation table and scaling runs
    python bench/peers/run.py --repeat 3      # each part 3 times, medians (~90 min)
    python bench/peers/run.py --quick         # small sizes: proves the scripts work
    python bench/peers/run.py --only celery   # a subset of the NAMES below
    python bench/peers/run.py --reuse         # rebuild the table from bench/results/*.json

Conveyor's numbers come from ``bench/workers.py --json`` (a subprocess, defaults: 2 worker
processes x concurrency 64; W1 submit included, W1-batch, W1-drain, W2, W3, W5, idle and
peak RSS) and ``bench/submit.py --json`` (one client's submit rate, Python API and HTTP).
Each peer script runs with its own venv's python (bench/.venvs/<peer>) and prints one JSON
line; a peer that is not installed or fails is skipped with the reason printed. Every
result is also written to bench/results/<name>.json (git-ignored), which ``--reuse`` reads
instead of running again.

The physical-limit line: commits/s of a single-row INSERT + UPDATE transaction, one
client, on PostgreSQL (pgbench, 10 s) and on SQLite (WAL, synchronous=FULL, 10 s loop).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PEERS_DIR = ROOT / "bench" / "peers"
VENVS = ROOT / "bench" / ".venvs"
RESULTS = ROOT / "bench" / "results"
PG_ADMIN_URL = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
NAMES = ("conveyor", "submit", "celery", "dbos", "procrastinate", "limits")
# Conveyor alone and long (about 20 and 15 minutes): run when named in --only, or with --all;
# each prints its own tables as it goes (docs/scaling.md quotes them).
LONG = ("saturation", "scaling")
LONG_ARGS = {
    "saturation": ["--backends", "postgres,sqlite", "--drain-limit", "30"],
    "scaling": ["--workloads", "w1,w1-drain,w3"],
}
LONG_QUICK = {
    "saturation": ["--rates", "20,40", "--seconds", "5"],
    "scaling": ["--workers", "1,2", "--skip-throughput", "--pgbench-seconds", "2"],
}
TIMEOUTS = {
    "saturation": 3600,
    "scaling": 3600,
    "conveyor": 2400,
    "submit": 900,
    "celery": 900,
    "dbos": 1800,
    "procrastinate": 900,
}
QUICK = {  # --quick: sizes small enough to check every script in a few minutes
    "workers": ["--executions", "100", "--batch", "25", "--w2-executions", "30", "--flows", "2"],
    "submit": ["--count", "200", "--batch", "50"],
    "env": {
        "PEER_BENCH_EXECUTIONS": "100",
        "PEER_BENCH_W2_EXECUTIONS": "30",
        "PEER_BENCH_W5_FLOWS": "2",
        "PEER_BENCH_BATCH": "25",
    },
}

PGBENCH_SCRIPT = """\\set id random(1, 2000000000)
BEGIN;
INSERT INTO bench_row (id, v) VALUES (:id, 0) ON CONFLICT (id) DO NOTHING;
UPDATE bench_row SET v = v + 1 WHERE id = :id;
END;
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


# -- running ---------------------------------------------------------------------------------


def run_conveyor(repeat: int, quick: bool) -> dict[str, Any]:
    """bench/workers.py, every workload on both backends, ``--repeat`` runs interleaved;
    its own tables are printed as they come."""
    out = RESULTS / "conveyor_workers.json"
    command = [sys.executable, str(ROOT / "bench" / "workers.py"), "--json", str(out)]
    command += ["--repeat", str(repeat), *(QUICK["workers"] if quick else [])]
    proc = subprocess.run(command, timeout=TIMEOUTS["conveyor"] * repeat, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench/workers.py exited {proc.returncode}")
    return conveyor_from_raw(json.loads(out.read_text()))


def _median(values: list[float]) -> float:
    return statistics.median(values)


def conveyor_from_raw(raw: list[dict[str, Any]]) -> dict[str, Any]:
    """bench/workers.py --json rows -> {backend: {w1: {...}, w1_batch: ..., w5: {...}}},
    the median over repeated runs, in the keys the peer scripts use."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in raw:
        key = r["workload"].lower().replace("-", "_")
        runs.setdefault((r["backend"], key), []).append(_conveyor_cell(r))
    found: dict[str, Any] = {}
    for (backend, key), cells in runs.items():
        found.setdefault(backend, {})[key] = merge_runs(cells)
    return found


def _conveyor_cell(r: dict[str, Any]) -> dict[str, Any]:
    peak = [w["peak_rss_mb"] for w in r["workers"]]
    if r["workload"] == "W2":
        lat = r["latencies_ms"]
        return {"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "peak_rss_mb": peak}
    if r["workload"] == "W5":
        flows, work = r["latencies_ms"], r["work_ms"]
        overheads = [(f - w) / 40 for f, w in zip(flows, work, strict=True)]
        return {
            "flow_s": _median(flows) / 1000,
            "work_ms": _median(work),
            "overhead_ms": _median(overheads),
            "peak_rss_mb": peak,
        }
    cell = {
        "executions": r["executions"],
        "run_s": r["run_seconds"],
        "executions_per_s": r["executions"] / r["run_seconds"],
        "peak_rss_mb": peak,
    }
    if r["idle_rss_mb"]:  # W1, W1-batch: submit included
        cell["idle_rss_mb"] = r["idle_rss_mb"]
        cell["submit_per_s"] = r["executions"] / r["enqueue_seconds"]
    return cell


def merge_runs(runs: list[Any]) -> Any:
    """The median of each number over repeated runs (lists: of each position)."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: merge_runs([r[k] for r in runs if k in r]) for k in first}
    if isinstance(first, list) and first and all(isinstance(v, int | float) for v in first):
        width = min(len(r) for r in runs)
        return [_median([r[i] for r in runs]) for i in range(width)]
    if isinstance(first, int | float) and not isinstance(first, bool):
        return _median([r for r in runs if isinstance(r, int | float)])
    return first


def run_submit(repeat: int, quick: bool) -> dict[str, Any]:
    """bench/submit.py: one client's submit rate (Python API and HTTP), both backends;
    with ``repeat``, the median of each figure."""
    out = RESULTS / "conveyor_submit_raw.json"
    command = [sys.executable, str(ROOT / "bench" / "submit.py"), "--json", str(out)]
    command += QUICK["submit"] if quick else []
    found = []
    for _ in range(repeat):
        proc = subprocess.run(command, timeout=TIMEOUTS["submit"], text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"bench/submit.py exited {proc.returncode}")
        found.append(json.loads(out.read_text()))
    return dict(merge_runs(found))


def run_long(name: str, quick: bool) -> dict[str, Any]:
    """bench/saturation.py or bench/scaling.py, which print their own tables; their
    measurements are kept in bench/results/<name>.json."""
    out = RESULTS / f"conveyor_{name}_raw.json"
    command = [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--json", str(out)]
    command += LONG_QUICK[name] if quick else LONG_ARGS[name]
    proc = subprocess.run(command, timeout=TIMEOUTS[name], text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench/{name}.py exited {proc.returncode}")
    return {"raw": json.loads(out.read_text())}


def run_peer(peer: str, repeat: int, quick: bool) -> dict[str, Any]:
    found = [_run_peer_once(peer, quick) for _ in range(repeat)]
    return dict(merge_runs(found))


def _run_peer_once(peer: str, quick: bool) -> dict[str, Any]:
    python = VENVS / peer / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} missing: run bash bench/peers/setup.sh")
    proc = subprocess.run(
        [str(python), str(PEERS_DIR / f"{peer}_bench.py")],
        timeout=TIMEOUTS[peer],
        capture_output=True,
        text=True,
        cwd=PEERS_DIR,
        env={**os.environ, **(QUICK["env"] if quick else {})},
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return json.loads(lines[-1])


def pg_commits_per_s() -> float:
    pgbench = shutil.which("pgbench") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None
    )
    if not pgbench:
        raise RuntimeError("pgbench not found (Debian package postgresql-contrib/-client)")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    db = "physlimit_bench"

    def psql(url: str, sql: str) -> None:
        subprocess.run(["psql", url, "-qc", sql], check=True, capture_output=True, timeout=60)

    psql(PG_ADMIN_URL, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    psql(PG_ADMIN_URL, f"CREATE DATABASE {db}")
    try:
        psql(f"{base}/{db}", "CREATE TABLE bench_row (id bigint PRIMARY KEY, v int NOT NULL)")
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
            f.write(PGBENCH_SCRIPT)
        try:
            proc = subprocess.run(
                [str(pgbench), "-n", "-f", f.name, "-T", "10", "-c", "1", f"{base}/{db}"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
        finally:
            os.unlink(f.name)
    finally:
        psql(PG_ADMIN_URL, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    match = re.search(r"tps = ([\d.]+)", proc.stdout)
    if not match:
        raise RuntimeError(f"no tps in pgbench output: {proc.stdout[-400:]}")
    return float(match.group(1))


def sqlite_commits_per_s(seconds: float = 10.0) -> float:
    with tempfile.TemporaryDirectory(prefix="physlimit-") as folder:
        conn = sqlite3.connect(os.path.join(folder, "limit.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE bench_row (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        commits, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench_row (id, v) VALUES (?, 0)", (commits,))
            conn.execute("UPDATE bench_row SET v = v + 1 WHERE id = ?", (commits,))
            conn.execute("COMMIT")
            commits += 1
        elapsed = time.perf_counter() - start
        conn.close()
    return commits / elapsed


def run_limits() -> dict[str, Any]:
    found: dict[str, Any] = {}
    try:
        found["postgres"] = pg_commits_per_s()
    except (RuntimeError, subprocess.SubprocessError) as exc:
        print(f"physical limit, postgres: skipped: {exc}", flush=True)
    found["sqlite"] = sqlite_commits_per_s()
    found["sqlite_version"] = sqlite3.sqlite_version
    return found


# -- the table ----------------------------------------------------------------------------


def _f(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _get(data: Any, *keys: str) -> float | None:
    """A number from nested dicts; a list of per-worker numbers gives its largest."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    if isinstance(data, list):
        return max(data) if data else None
    return data if isinstance(data, int | float) else None


ROWS = [  # label, workload, key, decimals
    (
        "W1 executions/s, submit included (500 x 5 steps, 1 submit at a time)",
        "w1",
        "executions_per_s",
        1,
    ),
    ("W1 client submits/s (workers running)", "w1", "submit_per_s", 0),
    ("W1-batch executions/s, submit included (batches of 100)", "w1_batch", "executions_per_s", 1),
    (
        "W1-drain executions/s (claim to finish, enqueued beforehand)",
        "w1_drain",
        "executions_per_s",
        1,
    ),
    ("W2 p50 ms (200 sequential, 1 step)", "w2", "p50_ms", 1),
    ("W2 p99 ms", "w2", "p99_ms", 1),
    ("W3 wall s (20 x root->50->join, claim to finish)", "w3", "run_s", 2),
    ("W5 s per flow (40 sequential steps x 10 ms CPU)", "w5", "flow_s", 3),
    ("W5 overhead ms per step", "w5", "overhead_ms", 2),
    ("idle worker RSS MB (max of 2)", "w1", "idle_rss_mb", 0),
    ("peak worker RSS MB under W1 (max of 2)", "w1", "peak_rss_mb", 0),
]


def table(results: dict[str, Any]) -> str:
    conveyor = results.get("conveyor") or {}
    # (header, peer cell, Conveyor backend to compare with)
    columns: list[tuple[str, dict[str, Any] | None, str]] = []
    celery = results.get("celery")
    if celery:
        columns.append(("Celery (Redis)", celery, "postgres"))
    dbos = results.get("dbos")
    if dbos:
        for backend in ("postgres", "sqlite"):
            if backend in dbos and "error" not in dbos[backend]:
                columns.append((f"DBOS ({backend})", dbos[backend], backend))
    procrastinate = results.get("procrastinate")
    if procrastinate:
        columns.append(("Procrastinate (postgres)", procrastinate, "postgres"))
    header = ["workload", "Conveyor SQLite", "Conveyor PG"]
    for name, _, _backend in columns:
        header += [name, "ratio"]
    body = []
    for label, workload, key, digits in ROWS:
        row = [
            label,
            _f(_get(conveyor, "sqlite", workload, key), digits),
            _f(_get(conveyor, "postgres", workload, key), digits),
        ]
        for _, cell, backend in columns:
            peer = _get(cell, workload, key)
            mine = _get(conveyor, backend, workload, key)
            row += [_f(peer, digits), f"{mine / peer:.2f}x" if mine and peer else "-"]
        if any(cell != "-" for cell in row[1:]):
            body.append(row)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|"
        + "|".join(
            ":" + "-" * (w + 1) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)
        )
        + "|",
    ]
    for r in body:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _w1_sizes(results: dict[str, Any]) -> list[float]:
    """W1's executions in every column (a ``--reuse`` may mix --quick and full runs)."""
    cells = [results.get(p) for p in ("celery", "procrastinate")]
    cells += [(results.get("dbos") or {}).get(b) for b in ("postgres", "sqlite")]
    cells += [(results.get("conveyor") or {}).get(b) for b in ("postgres", "sqlite")]
    found = [_get(c, "w1", "executions") for c in cells]
    return [n for n in found if n is not None]


def submit_table(submit: dict[str, Any]) -> str:
    rows = [
        ("Python API, execute one at a time: /s", "api_single_per_s", 0),
        ("Python API, execute p50 ms", "api_single_p50_ms", 2),
        ("Python API, execute_many in batches: /s", "api_batched_per_s", 0),
        ("HTTP, one POST per execution (keep-alive): /s", "http_single_per_s", 0),
        ("HTTP, one POST p50 ms", "http_single_p50_ms", 2),
        ("HTTP, one POST p99 ms", "http_single_p99_ms", 2),
        ("HTTP, list body in batches: /s", "http_batched_per_s", 0),
    ]
    backends = [b for b in ("sqlite", "postgres") if b in submit]
    lines = ["| " + " | ".join(["metric", *backends]) + " |", "|:--|" + "--:|" * len(backends)]
    for label, key, digits in rows:
        cells = [_f(_get(submit, b, key), digits) for b in backends]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    batch = submit.get("batch")
    return "\n".join(lines) + (f"\n\nbatches of {batch}" if batch else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        default=",".join(NAMES),
        help=f"comma-separated subset of {','.join(NAMES + LONG)} (default: {','.join(NAMES)})",
    )
    parser.add_argument(
        "--all", action="store_true", help=f"everything: the default parts, then {','.join(LONG)}"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="use bench/results/<name>.json where present"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="runs of each part; medians (1)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (W1 100, W2 30, W5 2 flows, submit 200) to check the scripts",
    )
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    if args.all:
        only = list(NAMES + LONG)
    unknown = set(only) - set(NAMES + LONG)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cpus", flush=True)
    results: dict[str, Any] = {}
    for name in only:
        found = gather(name, args)
        if found is not None:
            results[name] = found
    report(results)
    return 0


def gather(name: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """One part's results: run now, or read back with ``--reuse``; None when skipped."""
    saved = RESULTS / f"{name}.json"
    if args.reuse and saved.exists():
        print(f"{name}: reused {saved.relative_to(ROOT)}", flush=True)
        return dict(json.loads(saved.read_text()))
    print(f"{name}: running ...", flush=True)
    start = time.monotonic()
    try:
        if name == "conveyor":
            found = run_conveyor(args.repeat, args.quick)
        elif name == "submit":
            found = run_submit(args.repeat, args.quick)
        elif name == "limits":
            found = run_limits()
        elif name in LONG:
            found = run_long(name, args.quick)
        else:
            found = run_peer(name, args.repeat, args.quick)
    except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
        print(f"{name}: skipped: {' '.join(str(exc).split())}", flush=True)
        return None
    saved.write_text(json.dumps(found, indent=1))
    for backend, cell in found.items() if name == "dbos" else ():
        if isinstance(cell, dict) and "error" in cell:
            print(f"dbos {backend}: skipped: {' '.join(cell['error'].split())[-300:]}")
    print(f"{name}: done in {time.monotonic() - start:.0f}s", flush=True)
    return found


def report(results: dict[str, Any]) -> None:
    print()
    versions = ", ".join(
        f"{results[p]['peer']} {results[p]['version']}"
        for p in ("celery", "dbos", "procrastinate")
        if p in results
    )
    if versions:
        print(f"peers: {versions}")
    print("ratio = Conveyor / peer on the same database (Celery: Conveyor PG); for")
    print("executions/s higher is better for Conveyor, for ms, s and MB lower is.")
    print("Every W1 variant uses 2 worker processes x 64 slots; 'submit included' is timed from")
    print("the client's first submit to the last finish, with the workers already running.\n")
    print(table(results))
    sizes = sorted({int(n) for n in _w1_sizes(results)})
    if len(sizes) > 1:
        print(f"\nWARNING: the columns ran W1 with different sizes ({sizes}): --quick or --reuse")
    submit = results.get("submit")
    if submit:
        print("\none client submitting, no worker (bench/submit.py):\n")
        print(submit_table(submit))
    limits = results.get("limits")
    if limits:
        print(
            "\nphysical limit, single client, commits/s of a 1-row INSERT+UPDATE transaction: "
            f"PostgreSQL {_f(limits.get('postgres'), 0)} (pgbench -c 1 -T 10), "
            f"SQLite WAL synchronous=FULL {_f(limits.get('sqlite'), 0)}"
        )


if __name__ == "__main__":
    sys.exit(main())
