"""G12 on SQLite: writers SIGKILLed at random moments, over and over, mid-transaction as
often as not (each runs a worker and enqueues executions, so it is inside a write
transaction much of the time). After every kill the file passes ``PRAGMA integrity_check``
and ``foreign_key_check`` and the invariant checker finds nothing (judged mid-run: what is
in flight may be unfinished); at the end a surviving writer finishes everything and every
execution succeeds with the invariants whole.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.store.tables import executions
from tests.e2e.processes import REPO
from tests.invariants import check

# A kill waits (up to a second, freezing the writer again and again) for a moment inside a
# write transaction; a writer writes through its whole life (tests/e2e/sqlite_writer.py),
# so nearly every kill lands inside one. Kill until INSIDE of them did (at most ATTEMPTS
# writers, KILLING_SECONDS of killing), and require at least MUST_LAND.
INSIDE = 10
MUST_LAND = 4
ATTEMPTS = 40
KILLING_SECONDS = 30.0
WORKFLOW = {
    "name": "kills",
    # Killed over and over on purpose: an interrupted step may be interrupted again.
    "settings": {"retry": {"max_attempts": 50, "initial_interval": "10ms"}},
    "nodes": [
        {"id": "a", "type": "transform", "config": {"output": 1}},
        {"id": "b", "type": "transform", "needs": ["a"], "config": {"output": 2}},
        {"id": "c", "type": "transform", "needs": ["a"], "config": {"output": 3}},
        {"id": "d", "type": "transform", "needs": ["b", "c"], "config": {"output": 4}},
    ],
}
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
# Mid-run, a dead writer's executions wait for their leases to expire: not yet a violation.
IN_FLIGHT = ("expired lease",)

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


class Forker:
    """tests/e2e/sqlite_writer.py: forks writers on request."""

    def __init__(self, url: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.sqlite_writer", url],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def fork(self, command: str, flag: Path) -> int:
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.popen.stdin.write(f"{command} {flag}\n")
        self.popen.stdin.flush()
        return int(self.popen.stdout.readline())

    def close(self) -> None:
        self.popen.kill()
        self.popen.wait(timeout=10)
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                pipe.close()


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def kill_mid_transaction(pid: int, flag: Path, within: float = 1.0) -> bool:
    """SIGKILL ``pid`` once it is stopped inside a write transaction (or after ``within``
    seconds anyway); whether the kill landed inside one."""
    deadline = time.monotonic() + within
    while True:
        os.kill(pid, signal.SIGSTOP)
        inside = flag.read_bytes()[:1] == b"\x01"
        if inside or time.monotonic() > deadline:
            kill(pid)
            return inside
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.001)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not gone(pid):
        assert time.monotonic() < deadline, f"writer {pid} survived SIGKILL"
        time.sleep(0.005)


def file_checks(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        integrity = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        foreign = conn.execute("PRAGMA foreign_key_check").fetchall()
    conn.close()
    problems = [] if integrity == ["ok"] else [f"integrity_check: {integrity}"]
    return problems + ([f"foreign_key_check: {foreign}"] if foreign else [])


@pytest.fixture
def forker(database_url: str) -> Iterator[Forker]:
    process = Forker(database_url)
    try:
        yield process
    finally:
        process.close()


@pytest.mark.timeout(120)
async def test_sqlite_writers_killed_mid_transaction_leave_an_intact_file(
    backend: str, database_url: str, forker: Forker, tmp_path: Path
) -> None:
    seed = int(os.environ.get("E2E_KILL_SEED") or int.from_bytes(os.urandom(4), "big"))
    print(f"\nE2E_KILL_SEED={seed}")
    chance = random.Random(seed)
    app = await Conveyor.open(database_url, build_registry())
    path = Path(app.store.db.url.database or "")
    try:
        await app.apply(WORKFLOW)
        started = time.monotonic()
        inside = attempts = 0
        while inside < INSIDE and attempts < ATTEMPTS:
            if time.monotonic() - started > KILLING_SECONDS:
                break
            n = attempts
            attempts += 1
            flag = tmp_path / f"flag-{n}"
            flag.write_bytes(b"\x00")
            pid = forker.fork("write", flag)
            await asyncio.sleep(chance.uniform(0.15, 0.6))  # the random moment of the kill
            inside += kill_mid_transaction(pid, flag)
            problems = file_checks(path) + [
                p for p in check(app.store.db, settled=False) if not any(m in p for m in IN_FLIGHT)
            ]
            assert problems == [], f"after kill {n + 1}: {problems}"
        killing = time.monotonic() - started
        flag = tmp_path / "flag-finish"
        flag.write_bytes(b"\x00")
        finisher = forker.fork("finish", flag)
        deadline = time.monotonic() + 60
        while True:
            statuses = await _statuses(app)
            if statuses and set(statuses) <= TERMINAL:
                break
            assert time.monotonic() < deadline, f"not finished: {statuses}"
            await asyncio.sleep(0.1)
        kill(finisher)
        print(
            f"{attempts} writers killed in {killing:.1f}s, {inside} inside a write transaction; "
            f"{sum(statuses.values())} executions"
        )
        assert inside >= MUST_LAND, "too few kills landed inside a write transaction"
        assert set(statuses) == {"succeeded"}, (statuses, await _errors(app))
        assert sum(statuses.values()) > attempts, "the writers enqueued next to nothing"
        assert file_checks(path) == []
        assert check(app.store.db) == []
    finally:
        app.close()


async def _statuses(app: Conveyor) -> dict[str, int]:
    with app.store.db.read() as conn:
        return dict(
            conn.execute(
                select(executions.c.status, func.count()).group_by(executions.c.status)
            ).all()
        )


async def _errors(app: Conveyor) -> list[object]:
    with app.store.db.read() as conn:
        return list(
            conn.execute(select(executions.c.error).where(executions.c.status != "succeeded"))
        )
