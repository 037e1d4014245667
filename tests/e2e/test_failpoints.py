"""A worker process dies at each failpoint in turn (src/conveyor/failpoints.py), another
takes over, and then the invariant checker (tests/invariants.py) and the side-effect ledger
(tests/ledger.py) judge what happened, on SQLite and on PostgreSQL: nothing accepted is lost
(G1), nothing committed runs again (G2), an interrupted step runs again with the same key
unless it is at-most-once (G3), stale owners are fenced (G4), events stay gap-free (G11).

The workflow: ``a``, then ``c`` and ``e`` side by side, then ``b`` (at-most-once, alone in
flight so that a death aimed at it touches nothing else), then ``d``; every node is an
``http.request`` to the ledger, which records the call with its idempotency key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from conveyor.app import Conveyor
from tests.e2e.conftest import Side, eventually
from tests.e2e.processes import Workers
from tests.invariants import Snapshot, check
from tests.ledger import Ledger

NODES = ["a", "b", "c", "d", "e"]
AT_MOST_ONCE = {"b"}
COUNT = 4
PRIVATE = {"CONVEYOR_ALLOW_PRIVATE_NETWORK": "true"}
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


def definition(ledger: Ledger, name: str, sleep: float = 0.15) -> dict[str, Any]:
    once = {"retry": {"max_attempts": 1}}
    return {
        "name": name,
        "settings": {"retry": {"max_attempts": 5, "initial_interval": "100ms"}},
        "nodes": [
            ledger.node("a", sleep),
            ledger.node("c", sleep, needs=["a"]),
            ledger.node("e", sleep, needs=["a"]),
            ledger.node("b", sleep, needs=["c", "e"], **once),
            ledger.node("d", sleep, needs=["b"]),
        ],
    }


# (failpoint spec, what the executions end as). The victim dies at its first hit, except
# where ``@n`` lets earlier hits pass so that the death lands mid-execution.
SCENARIOS = {
    "claim.before": ("claim.before=exit@2", "succeeded"),
    "claim.after": ("claim.after=exit", "succeeded"),
    "step.before_start": ("step.before_start:c=exit", "succeeded"),
    "step.before_start at-most-once": ("step.before_start:b=exit", "interrupted"),
    "step.after_effect": ("step.after_effect:c=exit", "succeeded"),
    "step.after_effect at-most-once": ("step.after_effect:b=exit", "interrupted"),
    "commit.before": ("commit.before=exit@3", "succeeded"),
    "commit.after": ("commit.after=exit@3", "succeeded"),
    "final.before": ("final.before=exit", "succeeded"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_a_worker_killed_at_each_failpoint_loses_nothing_and_repeats_nothing_committed(
    scenario: str, app: Conveyor, side: Side, workers: Workers, ledger: Ledger
) -> None:
    spec, expected = SCENARIOS[scenario]
    await app.apply(definition(ledger, "fp"))
    ids = [(await app.execute("fp", {"n": i})).execution_id for i in range(COUNT)]
    victim = workers.start(concurrency=COUNT, CONVEYOR_TEST_FAILPOINTS=spec, **PRIVATE)
    code = await asyncio.to_thread(victim.wait, 60)
    assert code == 137, f"the failpoint {spec} never fired\n{workers.logs()}"
    # The executions in flight; a death before any commit leaves them all queued.
    before = Snapshot(side.db)
    workers.start(concurrency=COUNT, **PRIVATE)
    await eventually(
        lambda: all(s in TERMINAL for s in side.statuses(ids).values()),
        within=60,
        what="every execution ends after the takeover",
        interval=0.05,
        diagnose=workers.logs,
    )
    assert before.changed() == [], "an execution finished before the death changed later"
    assert check(side.db) == []
    assert ledger.violations(side.db, ids, NODES, AT_MOST_ONCE) == []
    _expect(side, ids, ledger, expected, spec)


def _expect(side: Side, ids: list[str], ledger: Ledger, expected: str, spec: str) -> None:
    statuses = side.statuses(ids)
    calls = ledger.by_key()
    if expected == "succeeded":
        assert set(statuses.values()) == {"succeeded"}, statuses
        return
    # The at-most-once step was started (its start committed) when its worker died: it is
    # not run again but fails as interrupted, and so does its execution.
    interrupted = [
        e
        for e in ids
        if any(s["node_id"] == "b" and s["status"] == "interrupted" for s in side.steps(e))
    ]
    assert interrupted, f"{spec}: the at-most-once step was never interrupted {statuses}"
    for execution_id in interrupted:
        assert statuses[execution_id] == "failed"
        rows = [s for s in side.steps(execution_id) if s["node_id"] == "b"]
        assert [r["status"] for r in rows] == ["interrupted"], rows
        assert f"{execution_id}:d" not in calls
    # The execution that hit the failpoint: before_start, it died before the call;
    # after_effect, after exactly one. (Others' ``b`` may have been anywhere in flight; the
    # ledger check above holds each of them to at most one call.)
    made = {len(calls.get(f"{e}:b", [])) for e in interrupted}
    assert (0 if "before_start" in spec else 1) in made, made


@pytest.mark.timeout(120)
async def test_a_worker_whose_lease_renewal_hangs_is_fenced_off(
    app: Conveyor, side: Side, workers: Workers, ledger: Ledger, tmp_path: Path
) -> None:
    """The victim's renewals hang (parked, its process otherwise healthy) while its step is
    in flight (the step's effect done, its result parked before the commit): another worker
    takes the execution over once the lease runs out and runs the step again with the same
    key; the victim's late result is refused (G4) and nothing runs twice after its commit.
    Both parks are released only once the execution has ended, so however slow the machine,
    the takeover comes before the victim's commit."""
    renewals, result = tmp_path / "renewals", tmp_path / "result"
    await app.apply(
        {
            "name": "slow",
            "settings": {"retry": {"max_attempts": 5, "initial_interval": "100ms"}},
            "nodes": [ledger.node("a", 0.05), ledger.node("long", 0.2, needs=["a"])],
        }
    )
    victim = workers.start(
        concurrency=1,
        CONVEYOR_TEST_FAILPOINTS=(
            f"lease.renew=park:{renewals};step.after_effect:long=park:{result}"
        ),
        **PRIVATE,
    )
    await eventually(victim.connected, within=30, what="the victim connects")
    execution_id = (await app.execute("slow", {})).execution_id
    for parked in (result, renewals):
        await eventually(
            lambda p=parked: Path(f"{p}.parked").exists(),
            within=30,
            what=f"the victim parks at {parked.name}",
            diagnose=workers.logs,
        )
    workers.start(concurrency=1, **PRIVATE)
    await eventually(
        lambda: side.statuses([execution_id])[execution_id] in TERMINAL,
        within=60,
        what="the execution ends",
        interval=0.05,
        diagnose=workers.logs,
    )
    renewals.touch()
    result.touch()
    assert side.statuses([execution_id])[execution_id] == "succeeded"
    effects = ledger.by_key()[f"{execution_id}:long"]
    assert len(effects) == 2, "the step in flight at the takeover ran again, with its key"
    assert check(side.db) == []
    assert ledger.violations(side.db, [execution_id], ["a", "long"], set()) == []
    assert victim.alive, "the victim lives on, fenced off, not crashed"
    await eventually(
        lambda: workers.lease_trouble(victim.pid),
        within=30,
        what="the victim notices its lost lease",
        diagnose=workers.logs,
    )
