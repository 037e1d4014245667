"""Crash recovery with real worker processes: SIGKILL at random moments (G1, G2, G3, G5,
G11) and a SIGSTOPped worker whose stale write is fenced off (G4)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
from collections import defaultdict
from typing import Any

import psycopg
import pytest
from sqlalchemy import select

from conveyor.app import Conveyor
from conveyor.store.tables import executions
from tests.e2e.conftest import Call, Side, check_event_sequences, epoch, eventually, work
from tests.e2e.processes import LEASE, POLL, WorkerProcess, Workers

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
# G5 in the test profile: a dead worker's executions run again within lease + sweep + poll
# (about 3 s); the margin covers a loaded two-CPU machine.
RECOVERY_BOUND = LEASE + POLL + 1.8

CHAOS = {
    "name": "chaos",
    # Interrupted steps are re-run (at-least-once, G3) as long as attempts remain.
    "settings": {"retry": {"max_attempts": 10, "initial_interval": "100ms"}},
    "nodes": [
        work("a", sleep=0.03),
        work("b", ["a"], sleep=0.04),
        work("c", ["a"], sleep=0.02),
        work("d", ["b", "c"], sleep=0.03),
    ],
}


@pytest.mark.timeout(150)
async def test_random_sigkills_lose_nothing_and_repeat_only_in_flight_steps(
    backend: str, app: Conveyor, side: Side, workers: Workers
) -> None:
    # PostgreSQL: 200 executions on 3 workers. SQLite: 100 executions on 2 workers, because
    # every write there takes the single database write lock and the run must stay short.
    count, n_workers = (200, 3) if backend == "postgres" else (100, 2)
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    print(f"chaos seed {seed}")

    for _ in range(n_workers):
        workers.start(concurrency=8)
    await app.apply(CHAOS)
    ids = [(await app.execute("chaos", {"n": i})).execution_id for i in range(count)]

    def finished() -> int:
        return sum(s in TERMINAL for s in side.statuses(ids).values())

    kills: list[tuple[int, float, list[str]]] = []
    for fraction in sorted(rng.uniform(0.1, 0.7) for _ in range(4)):
        await eventually(
            lambda f=fraction: finished() >= f * count,  # type: ignore[misc]
            timeout=60,
            what=f"{fraction:.0%} of the executions finish",
            interval=0.05,
            diagnose=workers.logs,
        )
        # The replacement starts first and is claiming before the kill, so what is measured
        # is how soon the engine recovers, not how long a Python process takes to boot.
        replacement = workers.start(concurrency=8)
        await eventually(
            lambda r=replacement: side.held_by(r.pid),  # type: ignore[misc]
            timeout=20,
            what=f"replacement worker {replacement.pid} starts claiming",
            diagnose=workers.logs,
        )
        await asyncio.sleep(rng.uniform(0, 0.3))
        victim = rng.choice(workers.alive)
        # A worker holding nothing would prove nothing: kill it while it holds leases.
        await eventually(
            lambda v=victim: side.held_by(v.pid),  # type: ignore[misc]
            timeout=15,
            what=f"worker {victim.pid} holds an execution",
            interval=0.01,
            diagnose=workers.logs,
        )
        killed_at = victim.kill()
        kills.append((victim.pid, killed_at, side.held_by(victim.pid)))

    await eventually(
        lambda: finished() == count,
        timeout=90,
        what="every execution reaches a terminal state",
        interval=0.1,
        diagnose=workers.logs,
    )

    # G1: every accepted execution ends, and here every one succeeds.
    statuses = side.statuses(ids)
    assert sorted(set(statuses.values())) == ["succeeded"], {
        s: sum(v == s for v in statuses.values()) for s in set(statuses.values())
    }

    steps_by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in side.steps():
        steps_by[row["execution_id"], row["node_id"]].append(row)
    calls_by: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for call in side.calls():
        calls_by[call.execution_id, call.node_id].append(call)
    killed_pids = {pid: at for pid, at, _ in kills}

    repeated = 0
    for execution_id in ids:
        for node_id in "abcd":
            rows = steps_by[execution_id, node_id]
            node_calls = sorted(calls_by[execution_id, node_id], key=lambda c: c.attempt)
            where = f"{execution_id}:{node_id} steps={rows} calls={node_calls}"
            # G2: exactly one committed (succeeded) step per node.
            done = [r for r in rows if r["status"] == "succeeded"]
            assert len(done) == 1, where
            # G3: every call of a step carries the same key, execution id : node id.
            assert {c.idem_key for c in node_calls} == {f"{execution_id}:{node_id}"}, where
            assert len({c.attempt for c in node_calls}) == len(node_calls), where
            # The committed step is the last call; nothing ran after its commit.
            last = node_calls[-1]
            assert last.attempt == done[0]["attempt"] and last.outcome == "ok", where
            # Earlier calls are attempts that a killed worker had in flight.
            for call in node_calls[:-1]:
                repeated += 1
                assert call.pid in killed_pids, where
                assert call.started_at < killed_pids[call.pid], where
                [row] = [r for r in rows if r["attempt"] == call.attempt]
                assert row["status"] == "interrupted", where
    assert repeated >= 1, "no kill interrupted a step in flight; the test proved nothing"

    # G5: every execution a killed worker held started its next step (or finished) within
    # about lease + poll after the kill.
    rows = {r["id"]: r for r in _execution_rows(side, ids)}
    delays = []
    claims = []
    for pid, killed_at, held in kills:
        assert held, f"worker {pid} held nothing when killed"
        for execution_id in held:
            assert rows[execution_id]["recoveries"] >= 1
            later = [
                c.started_at
                for c in side.calls(execution_id)
                if c.started_at > killed_at and c.pid != pid
            ]
            resumed = min([*later, epoch(rows[execution_id]["finished_at"])])
            delays.append(resumed - killed_at)
            claimed = min(
                epoch(e["created_at"])
                for e in side.events(execution_id)
                if epoch(e["created_at"]) > killed_at
            )
            claims.append(claimed - killed_at)
    print(f"{len(kills)} kills, {repeated} repeated calls, recovery max {max(delays):.2f}s")
    print("claims", sorted(round(x, 2) for x in claims))
    print("steps", sorted(round(x, 2) for x in delays))
    assert max(delays) <= RECOVERY_BOUND, sorted(delays)[-5:]

    # G11: events stay gap-free through all of it.
    check_event_sequences(side, ids)


def _execution_rows(side: Side, ids: list[str]) -> list[dict[str, Any]]:
    with side.db.read() as conn:
        return [
            dict(r)
            for r in conn.execute(select(executions).where(executions.c.id.in_(ids))).mappings()
        ]


# -- fencing -----------------------------------------------------------------------------------


def _mid_transaction(backend: str, side: Side) -> bool:
    """Whether some other connection is inside a statement or a transaction right now (only
    the stopped worker is connected when this is asked)."""
    url = side.db.url
    if backend == "postgres":
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                " AND state <> 'idle'"
            ).fetchone()
            return bool(busy and busy[0])
    conn = sqlite3.connect(str(url.database), timeout=0.3, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


async def _stop_between_transactions(backend: str, side: Side, worker: WorkerProcess) -> None:
    """SIGSTOP the worker, but never while it holds a database lock: that would block the
    other worker for a reason that has nothing to do with leases."""
    for _ in range(50):
        worker.stop()
        if not _mid_transaction(backend, side):
            return
        worker.cont()
        await asyncio.sleep(0.03)
    raise AssertionError("could not stop the worker outside a transaction")


def _snapshot(side: Side, execution_id: str) -> tuple[Any, ...]:
    return (side.execution(execution_id), side.steps(execution_id), side.events(execution_id))


@pytest.mark.timeout(60)
async def test_a_stopped_worker_that_wakes_up_after_its_lease_cannot_write(
    backend: str, app: Conveyor, side: Side, workers: Workers
) -> None:
    await app.apply(
        {
            "name": "fenced",
            "settings": {"retry": {"max_attempts": 3}},
            "nodes": [
                # Attempt 1 outlives the lease twice over; the recovery's attempt is quick.
                work("slow", sleep=0.05, first_attempt_sleep=LEASE * 2),
                work("after", ["slow"], sleep=0.01),
            ],
        }
    )
    first = workers.start(concurrency=1)
    execution_id = (await app.execute("fenced", {})).execution_id
    [stale_call] = await eventually(
        lambda: side.calls(execution_id), timeout=20, what="the slow step starts"
    )
    assert (stale_call.node_id, stale_call.attempt, stale_call.pid) == ("slow", 1, first.pid)

    await _stop_between_transactions(backend, side, first)
    second = workers.start(concurrency=1)
    await eventually(
        lambda: side.statuses([execution_id])[execution_id] in TERMINAL,
        timeout=LEASE + 15,
        what="the second worker takes over and finishes",
        diagnose=workers.logs,
    )
    before = _snapshot(side, execution_id)
    execution, step_rows, _ = before
    assert execution["status"] == "succeeded"
    assert execution["recoveries"] == 1
    by_attempt = {(s["node_id"], s["attempt"]): s["status"] for s in step_rows}
    assert by_attempt == {
        ("slow", 1): "interrupted",
        ("slow", 2): "succeeded",
        ("after", 1): "succeeded",
    }
    assert {c.pid for c in side.calls(execution_id) if c.id != stale_call.id} == {second.pid}

    # Wake the stale owner: its step ends, and its write of the result must be discarded.
    first.cont()
    await eventually(
        lambda: [c for c in side.calls(execution_id) if c.id == stale_call.id and c.ended_at],
        timeout=10,
        what="the stale attempt finishes its sleep",
    )
    await eventually(
        lambda: f"lease lost on {execution_id}" in first.log_text(),
        timeout=10,
        what="the stale worker is told its lease is gone",
        diagnose=workers.logs,
    )
    first.send(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    assert _snapshot(side, execution_id) == before
    check_event_sequences(side, [execution_id])
