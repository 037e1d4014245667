"""Idle load: how many transactions and statements an idle `conveyor worker` costs the
database per second (PostgreSQL, read from pg_stat_database and pg_stat_statements-free
counters), and its resident memory.

    python bench/idle.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import psycopg

ADMIN = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DB = "conveyor_bench_idle"


def counters(conn: psycopg.Connection) -> tuple[int, int]:
    row = conn.execute(
        "SELECT xact_commit + xact_rollback, tup_returned + tup_fetched "
        "FROM pg_stat_database WHERE datname = %s",
        (DB,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB}")
    url = ADMIN.rsplit("/", 1)[0] + "/" + DB
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url}
    worker = subprocess.Popen(
        [sys.executable, "-c", "from conveyor.cli.main import main; main()", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(5)  # migrations, LISTEN, first claims
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            tx0, _ = counters(conn)
            time.sleep(args.seconds)
            conn.execute("SELECT pg_stat_clear_snapshot()")
            tx1, _ = counters(conn)
        rate = (tx1 - tx0) / args.seconds
        print(
            f"idle worker on PostgreSQL: {rate:.2f} transactions/s over {args.seconds:g}s "
            f"(includes this probe's own 1 transaction), RSS {rss_mb(worker.pid):.0f} MB"
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
