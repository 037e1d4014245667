"""What the crash scenarios (tests/e2e/test_crash_*.py) share: ``conveyor server`` processes
(embedded worker and scheduler) that can be SIGKILLed, and reads of schedule occurrences and
events. (The ``ledger`` and ``servers`` fixtures are in conftest.py.)"""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from conveyor.store.tables import events, executions, schedule_fires, schedules
from tests.e2e.test_server import ServerProcess

if TYPE_CHECKING:
    from tests.e2e.conftest import Side

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
PRIVATE = {"CONVEYOR_ALLOW_PRIVATE_NETWORK": "true"}
FAST_SCHEDULER = {"CONVEYOR_SCHEDULER_POLL_SECONDS": "0.2"}


class Servers:
    """``conveyor server`` processes (embedded worker and scheduler) on one database; each
    is stopped and reaped by ``close``."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.started: list[ServerProcess] = []

    def start(self, concurrency: int = 8, **env: str) -> ServerProcess:
        process = ServerProcess(
            self.database_url,
            self.log_dir / f"server-{len(self.started)}.log",
            concurrency=concurrency,
            env={**PRIVATE, **FAST_SCHEDULER, **env},
        )
        self.started.append(process)
        return process

    def kill(self, process: ServerProcess) -> None:
        if process.alive:
            process.popen.send_signal(signal.SIGKILL)
        process.popen.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name} ---\n{p.log_text()[-3000:]}" for p in self.started)

    def close(self) -> None:
        for process in self.started:
            self.kill(process)
            process.close()


def fire_rows(side: Side, schedule_id: str) -> list[dict[str, Any]]:
    f = schedule_fires.c
    query = select(schedule_fires).where(f.schedule_id == schedule_id).order_by(f.nominal_at)
    with side.db.read() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def schedule_id(side: Side, key: str) -> str:
    with side.db.read() as conn:
        return str(conn.execute(select(schedules.c.id).where(schedules.c.key == key)).scalar_one())


def started_by(side: Side, trigger_id: str) -> list[str]:
    query = select(executions.c.id).where(executions.c.trigger_id == trigger_id)
    with side.db.read() as conn:
        return list(conn.execute(query).scalars())


def event_times(side: Side, kind: str, ids: list[str]) -> dict[str, list[tuple[int, datetime]]]:
    """Per execution, the (seq, created_at) of its events of type ``kind``."""
    query = (
        select(events.c.execution_id, events.c.seq, events.c.created_at)
        .where(events.c.type == kind, events.c.execution_id.in_(ids))
        .order_by(events.c.seq)
    )
    found: dict[str, list[tuple[int, datetime]]] = {e: [] for e in ids}
    with side.db.read() as conn:
        for execution_id, seq, at in conn.execute(query):
            found[execution_id].append((seq, at))
    return found


def counts(values: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values.values():
        out[value] = out.get(value, 0) + 1
    return out
