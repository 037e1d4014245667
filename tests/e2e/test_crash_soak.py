"""The random-kill soak: executions keep arriving while workers are SIGKILLed, SIGTERMed and
restarted at random moments; afterwards every invariant holds (tests/invariants.py), the
ledger agrees (tests/ledger.py), no concurrency key ever ran over its limit, and nothing
finished mid-soak changed later (G1, G2, G3, G4, G7, G11).

Bounded for CI: 25 s of chaos on PostgreSQL, 10 s on SQLite (whose single write lock makes
each second of chaos slower to drain; the other crash suites already cover SQLite's
recovery path, so a shorter soak there buys the most coverage per CI second). A longer
manual run: ``CONVEYOR_SOAK_SECONDS=600`` (both backends); ``CONVEYOR_SOAK_SEED`` repeats
the random choices of a run (not their timing; docs/testing.md).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

import pytest

from conveyor.app import Conveyor
from tests.e2e.conftest import Side, eventually
from tests.e2e.crash_support import PRIVATE, TERMINAL, counts
from tests.e2e.processes import WorkerProcess, Workers
from tests.invariants import LimitSampler, Snapshot, check
from tests.ledger import Ledger

CI_SECONDS = {"postgres": 25.0, "sqlite": 10.0}
NODES = ["a", "b", "c"]
AT_MOST_ONCE = {"c"}
WORKERS = 3
KEYS, KEY_LIMIT = 3, 2


def soak_seconds(backend: str) -> float:
    configured = os.environ.get("CONVEYOR_SOAK_SECONDS")
    return float(configured) if configured else CI_SECONDS[backend]


def workflow(ledger: Ledger) -> dict[str, Any]:
    return {
        "name": "soak",
        "settings": {
            "retry": {"max_attempts": 20, "initial_interval": "100ms"},
            "concurrency": {"key": f"k{{{{ input.n % {KEYS} }}}}", "key_limit": KEY_LIMIT},
        },
        "nodes": [
            ledger.node("a", 0.1),
            ledger.node("b", 0.3, needs=["a"]),
            ledger.node("c", 0.1, needs=["b"], retry={"max_attempts": 1}),
        ],
    }


@pytest.mark.timeout(900)
async def test_random_kills_while_executions_keep_arriving(
    backend: str, app: Conveyor, side: Side, workers: Workers, ledger: Ledger
) -> None:
    seconds = soak_seconds(backend)
    seed = int(os.environ.get("CONVEYOR_SOAK_SEED") or int.from_bytes(os.urandom(4), "big"))
    print(f"CONVEYOR_SOAK_SEED={seed} CONVEYOR_SOAK_SECONDS={seconds:g}")
    rng = random.Random(seed)
    await app.apply(workflow(ledger))
    for _ in range(WORKERS):
        workers.start(concurrency=6, **PRIVATE)
    ids: list[str] = []
    actions: list[str] = []
    with LimitSampler(side.db, interval=0.1) as sampler:
        began = time.monotonic()
        feeder = asyncio.create_task(_feed(app, ids, began + seconds))
        snapshot = None
        while time.monotonic() < began + seconds:
            await asyncio.sleep(rng.uniform(1.0, 3.0))
            actions.append(await _disturb(side, workers, rng))
            if snapshot is None and time.monotonic() > began + seconds / 2:
                snapshot = Snapshot(side.db)
        await feeder
        await eventually(
            lambda: all(s in TERMINAL for s in side.statuses(ids).values()),
            within=120,
            what="every execution ends after the soak",
            interval=0.2,
            diagnose=lambda: f"{counts(side.statuses(ids))}\n{workers.logs()}",
        )
        drained = time.monotonic() - began - seconds
    statuses = side.statuses(ids)
    print(
        f"{seconds:g}s soak: {len(ids)} executions {counts(statuses)}, ended {drained:.1f}s "
        f"after; {len(workers.started)} workers started; actions {dict(_tally(actions))}; "
        f"{len(ledger.effects)} calls; {sampler.samples} samples"
    )
    assert snapshot is not None and snapshot.changed() == []
    assert check(side.db, at_most_once=AT_MOST_ONCE) == []
    assert ledger.violations(side.db, ids, NODES, AT_MOST_ONCE) == []
    assert sampler.samples > 0 and sampler.violations == []
    assert sum(a == "kill" for a in actions) >= 1, "the soak never killed a worker"
    for execution_id, status in statuses.items():
        if status != "succeeded":  # only an interrupted at-most-once step may fail one
            rows = {(s["node_id"], s["status"]) for s in side.steps(execution_id)}
            assert status == "failed" and ("c", "interrupted") in rows, (execution_id, rows)


async def _feed(app: Conveyor, ids: list[str], until: float) -> None:
    """A few executions every quarter second, until the soak ends."""
    n = 0
    while time.monotonic() < until:
        batch = await asyncio.gather(*(app.execute("soak", {"n": n + i}) for i in range(3)))
        ids.extend(e.execution_id for e in batch)
        n += 3
        await asyncio.sleep(0.25)


async def _disturb(side: Side, workers: Workers, rng: random.Random) -> str:
    """SIGKILL a worker (one holding leases, if any), or SIGTERM one; start a replacement
    so that WORKERS run again."""
    alive = workers.alive
    holders = [w for w in alive if side.held_by(w.pid)]
    action = rng.choice(["kill", "kill", "kill", "term"])
    victim: WorkerProcess = rng.choice(holders or alive)
    if action == "kill":
        victim.kill()
    else:
        victim.send(signal.SIGTERM)
        await asyncio.to_thread(victim.wait, 30)
    while len(workers.alive) < WORKERS:
        workers.start(concurrency=6, **PRIVATE)
    return action


def _tally(actions: list[str]) -> dict[str, int]:
    return {a: actions.count(a) for a in sorted(set(actions))}
