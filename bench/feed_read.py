"""The live feed's read: CPU per read of a batch of events, on SQLite and PostgreSQL.

Run from the repository root with the project's virtualenv active::

    python bench/feed_read.py                    # both backends, batches of 400 events
    python bench/feed_read.py --backends sqlite --events 1000 --reads 200

A fresh database migrated by ``Conveyor.open``, ``--events`` rows of events (the five-step
chain's shapes: one execution per 14 events) inserted directly, without their executions
(foreign keys off for that one connection), then ``store.feed.read`` from frontier 0 as
the server's feed does, ``--reads`` times after one unmeasured read. Reported: CPU time of
the reading thread per read (``time.thread_time``), and per event. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.store import feed as reads

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workers import database  # bench/ is not a package

KINDS = ["execution.queued", "execution.started"]
KINDS += [kind for _ in range(5) for kind in ("step.started", "step.succeeded")]
KINDS += ["execution.progress", "execution.succeeded"]  # 14 per execution


def rows(count: int) -> list[tuple[str, str, int, str, str, datetime]]:
    now = datetime.now(UTC)
    data = {"node_id": "n3", "attempt": 1, "duration_ms": 12, "status": "succeeded"}
    return [
        ("ws-bench", f"ex-{i // 14}", i % 14 + 1, KINDS[i % 14], json.dumps(data), now)
        for i in range(count)
    ]


def fill(url: str, count: int) -> None:
    sql = (
        "INSERT INTO events (workspace_id, execution_id, seq, type, data, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))  # foreign keys off by default
        stamped = [(*r[:5], r[5].strftime("%Y-%m-%d %H:%M:%S.%f")) for r in rows(count)]
        conn.executemany(sql, stamped)
        conn.commit()
        conn.close()
        return
    with psycopg.connect(url) as pg:
        pg.execute("SET session_replication_role = replica")  # no foreign key checks
        with pg.cursor() as cursor:
            cursor.executemany(sql.replace("?", "%s"), rows(count))


async def measure(url: str, events: int, count: int) -> list[float]:
    conveyor = await Conveyor.open(url, build_registry())
    try:
        fill(url, events)
        store = conveyor.store

        def once() -> int:
            with store.db.read() as conn:
                batch = reads.read(conn, store.db.dialect, 0, None, ["ws-bench"], [], 1000)
            return len(batch.rows)

        if once() != min(events, 1000):
            raise SystemExit(f"BENCHMARK FAILED: a read did not return {events} events")
        samples = []
        for _ in range(count):
            began = time.thread_time()
            once()
            samples.append((time.thread_time() - began) * 1000)
        return samples
    finally:
        conveyor.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--events", type=int, default=400, help="events per read (<= 1000)")
    parser.add_argument("--reads", type=int, default=100)
    args = parser.parse_args()
    print("| backend | events per read | CPU ms per read (median) | CPU us per event |")
    print("|:--|--:|--:|--:|")
    for backend in args.backends.split(","):
        with database(backend) as url:
            samples = asyncio.run(measure(url, args.events, args.reads))
        median = statistics.median(samples)
        print(f"| {backend} | {args.events} | {median:.2f} | {median / args.events * 1000:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
