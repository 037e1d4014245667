"""Conveyor against its peers (Celery, DBOS, Procrastinate) on W1/W2/W3, in one table.

Run in Conveyor's venv, after ``bash bench/peers/setup.sh``:

    python bench/peers/run.py                 # everything (~20 min on the 2-core box)
    python bench/peers/run.py --only celery   # some of: conveyor,celery,dbos,procrastinate,limits
    python bench/peers/run.py --reuse         # rebuild the table from bench/results/*.json

Conveyor's numbers come from ``bench/workers.py --json`` (a subprocess, defaults: 2 worker
processes x concurrency 64). Each peer script runs with its own venv's python
(bench/.venvs/<peer>) and prints one JSON line; a peer that is not installed or fails is
skipped with the reason printed. Every result is also written to bench/results/<name>.json
(git-ignored), which ``--reuse`` reads instead of running again.

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
NAMES = ("conveyor", "celery", "dbos", "procrastinate", "limits")
TIMEOUTS = {"conveyor": 1800, "celery": 900, "dbos": 1500, "procrastinate": 900}

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


def run_conveyor() -> dict[str, Any]:
    out = RESULTS / "conveyor_workers.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "workers.py"), "--json", str(out)],
        timeout=TIMEOUTS["conveyor"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench/workers.py exited {proc.returncode}: {proc.stderr[-800:]}")
    return conveyor_from_raw(json.loads(out.read_text()))


def conveyor_from_raw(raw: list[dict[str, Any]]) -> dict[str, Any]:
    """bench/workers.py --json rows -> {backend: {w1: {...}, w2: {...}, w3: {...}}}."""
    found: dict[str, Any] = {}
    for r in raw:
        cell = found.setdefault(r["backend"], {})
        if r["workload"] == "W2":
            lat = r["latencies_ms"]
            cell["w2"] = {"p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99)}
        else:
            cell[r["workload"].lower()] = {
                "run_s": r["run_seconds"],
                "executions_per_s": r["executions"] / r["run_seconds"],
            }
    return found


def run_peer(peer: str) -> dict[str, Any]:
    python = VENVS / peer / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} missing: run bash bench/peers/setup.sh")
    proc = subprocess.run(
        [str(python), str(PEERS_DIR / f"{peer}_bench.py")],
        timeout=TIMEOUTS[peer],
        capture_output=True,
        text=True,
        cwd=PEERS_DIR,
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


def _get(data: dict[str, Any] | None, *keys: str) -> float | None:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data  # type: ignore[return-value]


ROWS = [  # label, workload, key, decimals
    ("W1 executions/s (500 x 5 steps)", "w1", "executions_per_s", 1),
    ("W2 p50 ms (200 sequential, 1 step)", "w2", "p50_ms", 1),
    ("W2 p99 ms", "w2", "p99_ms", 1),
    ("W3 wall s (20 x root->50->join)", "w3", "run_s", 2),
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
    header = ["workload", "Conveyor sqlite", "Conveyor postgres"]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="use bench/results/<name>.json where present"
    )
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(only) - set(NAMES)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"load {os.getloadavg()[0]:.1f}, {os.cpu_count()} cpus", flush=True)
    results: dict[str, Any] = {}
    for name in only:
        saved = RESULTS / f"{name}.json"
        if args.reuse and saved.exists():
            results[name] = json.loads(saved.read_text())
            print(f"{name}: reused {saved.relative_to(ROOT)}", flush=True)
            continue
        print(f"{name}: running ...", flush=True)
        start = time.monotonic()
        try:
            if name == "conveyor":
                results[name] = run_conveyor()
            elif name == "limits":
                results[name] = run_limits()
            else:
                results[name] = run_peer(name)
        except (RuntimeError, subprocess.SubprocessError, OSError, ValueError) as exc:
            print(f"{name}: skipped: {' '.join(str(exc).split())}", flush=True)
            continue
        saved.write_text(json.dumps(results[name], indent=1))
        for backend, cell in results[name].items() if name == "dbos" else ():
            if isinstance(cell, dict) and "error" in cell:
                print(f"dbos {backend}: skipped: {' '.join(cell['error'].split())[-300:]}")
        print(f"{name}: done in {time.monotonic() - start:.0f}s", flush=True)
    print()
    versions = ", ".join(
        f"{results[p]['peer']} {results[p]['version']}"
        for p in ("celery", "dbos", "procrastinate")
        if p in results
    )
    if versions:
        print(f"peers: {versions}")
    print("ratio = Conveyor / peer on the same database (Celery: Conveyor postgres); for")
    print("executions/s higher is better for Conveyor, for ms and s lower is.\n")
    print(table(results))
    limits = results.get("limits")
    if limits:
        print(
            "\nphysical limit, single client, commits/s of a 1-row INSERT+UPDATE transaction: "
            f"PostgreSQL {_f(limits.get('postgres'), 0)} (pgbench -c 1 -T 10), "
            f"SQLite WAL synchronous=FULL {_f(limits.get('sqlite'), 0)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
