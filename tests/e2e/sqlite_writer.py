"""A process that forks SQLite writers to be SIGKILLed (tests/e2e/test_sqlite_kills.py).

``python -m tests.e2e.sqlite_writer URL`` imports Conveyor once, then for every line
``write FLAG`` or ``finish FLAG`` on stdin forks a child and prints its pid. A ``write``
child runs a worker and enqueues executions of the workflow ``kills`` meanwhile (write
transactions many times a second); a ``finish`` child only runs the worker. Forking makes a
new writer in milliseconds, so a test can kill many in a few seconds; children are reaped
automatically. The first byte of the file FLAG is 1 while the child holds the write lock
(from its BEGIN IMMEDIATE until just before its COMMIT or ROLLBACK), else 0: stopped with
SIGSTOP, the child says whether a kill now lands mid-transaction.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.nodes.builtin import build_registry
from conveyor.store.sqlite import WRITE_OPTION
from conveyor.worker import Worker, WorkerSettings

# A write child enqueues one execution every ENQUEUE_EVERY seconds for as long as it lives
# (at most ENQUEUED_PER_CHILD): its worker writes through its whole life, whenever the
# kill comes. A burst up front (15 at once, before) was done within 0.25 s on a fast
# machine, and kills after that found an idle writer.
ENQUEUED_PER_CHILD = 60
ENQUEUE_EVERY = 0.05
SETTINGS = WorkerSettings(
    concurrency=4,
    lease=timedelta(seconds=2),
    heartbeat=timedelta(seconds=0.5),
    poll=timedelta(seconds=0.05),
    max_recoveries=10_000,  # killed over and over by design: never dead-letter here
)


def flag_transactions(engine: Engine, flag: Path) -> None:
    with flag.open("r+b") as file:
        shared = mmap.mmap(file.fileno(), 1)

    def begin(conn: Any) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            shared[0] = 1

    def end(conn: Any) -> None:
        shared[0] = 0

    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)


async def child(url: str, enqueue: bool, flag: Path) -> None:
    registry = build_registry()
    conveyor = await Conveyor.open(url, registry)
    flag_transactions(conveyor.store.db.engine, flag)
    worker = Worker(conveyor.store, registry, SystemClock(), settings=SETTINGS)
    serving = asyncio.create_task(worker.serve(asyncio.Event()))
    for n in range(ENQUEUED_PER_CHILD if enqueue else 0):
        await conveyor.execute("kills", {"n": n})
        await asyncio.sleep(ENQUEUE_EVERY)
    await serving


def main() -> None:
    url = sys.argv[1]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    for line in sys.stdin:
        command, flag = line.split()
        pid = os.fork()
        if pid == 0:
            asyncio.run(child(url, command == "write", Path(flag)))
            os._exit(0)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
