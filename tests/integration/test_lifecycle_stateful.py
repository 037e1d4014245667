"""A stateful test of the execution lifecycle (hypothesis): random sequences of execute,
cancel, pause, resume, signal, retry and replay against a real database with a worker
serving in the same process, and the invariant checker (tests/invariants.py) after every
step. Each command either does what it says or refuses with a clear ``ConveyorError``
(a conflict, say), never anything else; at the end, once everything is let go, every
execution ends and every invariant holds.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.errors import ConveyorError
from conveyor.nodes.builtin import build_registry
from conveyor.worker import Worker
from tests.invariants import TERMINAL, check

WORKFLOW = {
    "name": "life",
    "nodes": [
        {"id": "a", "type": "transform", "config": {"output": "{{ input }}"}},
        {"id": "pause", "type": "wait", "needs": ["a"], "config": {"duration": "200ms"}},
        {
            "id": "go",
            "type": "wait_for_event",
            "needs": ["a"],
            "config": {"event": "go", "timeout": "1h"},
        },
        {
            "id": "gate",
            "type": "condition",
            "needs": ["pause", "go"],
            "config": {"if": "{{ input.fail }}"},
        },
        {"id": "boom", "type": "fail", "needs": ["gate.true"], "config": {"message": "asked"}},
        {"id": "fine", "type": "transform", "needs": ["gate.false"], "config": {"output": 1}},
    ],
}
NODES = ["a", "pause", "go", "gate", "boom", "fine"]

actions = st.lists(
    st.one_of(
        st.tuples(st.just("execute"), st.booleans()),
        st.tuples(
            st.sampled_from(["cancel", "pause", "resume", "signal", "retry", "settle"]),
            st.integers(0, 5),
        ),
        st.tuples(st.just("replay"), st.integers(0, 5), st.sampled_from(NODES)),
    ),
    min_size=1,
    max_size=12,
)


class Lifecycle:
    """One example: the app, a worker serving, and the executions made so far."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.ids: list[str] = []
        self.refused: list[str] = []

    def pick(self, index: int) -> str | None:
        return self.ids[index % len(self.ids)] if self.ids else None

    async def do(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if kind == "execute":
            enqueued = await self.app.execute("life", {"fail": action[1]})
            self.ids.append(enqueued.execution_id)
            return
        if kind == "settle":
            await self.settle(within=5, require=False)
            return
        execution_id = self.pick(action[1])
        if execution_id is None:
            return
        try:
            await self._control(kind, execution_id, action)
        except ConveyorError as exc:  # refused cleanly (a conflict, a finished execution)
            self.refused.append(f"{kind}: {type(exc).__name__}")

    async def _control(self, kind: str, execution_id: str, action: tuple[Any, ...]) -> None:
        app = self.app
        if kind == "cancel":
            await app.cancel(execution_id)
        elif kind == "pause":
            await app.pause(execution_id)
        elif kind == "resume":
            await app.resume(execution_id)
        elif kind == "signal":
            await app.signal(execution_id, "go", {"n": action[1]})
        elif kind == "retry":
            self.ids.append((await app.retry(execution_id)).execution_id)
        else:
            self.ids.append((await app.replay(execution_id, action[2])).execution_id)

    async def statuses(self) -> dict[str, str]:
        found = {}
        for execution_id in self.ids:
            row = await self.app.store.get_execution(self.app.workspace_id, execution_id)
            found[execution_id] = row["status"]
        return found

    async def settle(self, within: float, *, require: bool) -> None:
        """Until every execution ended or waits (polled with a deadline)."""
        deadline = time.monotonic() + within
        while True:
            statuses = await self.statuses()
            if all(s in TERMINAL or s == "waiting" for s in statuses.values()):
                return
            if time.monotonic() > deadline:
                assert not require, f"not settled within {within}s: {statuses}"
                return
            await asyncio.sleep(0.02)

    async def let_go(self) -> None:
        """Resume and signal everything, then wait for every execution to end."""
        deadline = time.monotonic() + 30
        while True:
            statuses = await self.statuses()
            if all(s in TERMINAL for s in statuses.values()):
                return
            assert time.monotonic() < deadline, f"not all ended: {statuses}"
            for execution_id, status in statuses.items():
                if status not in TERMINAL:
                    with suppress(ConveyorError):  # it may have ended meanwhile
                        await self.app.resume(execution_id)
                        await self.app.signal(execution_id, "go")
            await self.settle(within=10, require=False)


async def scenario(database_url: str, steps: list[tuple[Any, ...]]) -> None:
    app = await Conveyor.open(database_url, build_registry())
    worker = Worker(
        app.store,
        app.registry,
        SystemClock(),
        concurrency=4,
        poll=timedelta(milliseconds=50),
        hold_timers_up_to=timedelta(0),
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    try:
        await app.apply(WORKFLOW)
        life = Lifecycle(app)
        for step in steps:
            await life.do(step)
            assert check(app.store.db, life.ids, settled=False) == [], step
        await life.let_go()
        assert check(app.store.db, settled=True) == []
    finally:
        stop.set()
        await asyncio.wait_for(serving, 20)
        app.close()


@pytest.mark.timeout(300)
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=actions)
def test_random_lifecycles_keep_every_invariant(database_url: str, steps: list[Any]) -> None:
    asyncio.run(scenario(database_url, steps))


async def test_controls_racing_the_final_write_never_land_after_it(conveyor: Conveyor) -> None:
    """Regression (found by the test above on PostgreSQL): a pause or signal that read the
    status just before a worker's final write committed its event after the terminal one.
    Here every execution is signalled and paused over and over while it finishes."""
    worker = Worker(conveyor.store, conveyor.registry, SystemClock(), concurrency=8)
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.serve(stop))
    one_step = {
        "name": "quick",
        "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
    }
    try:
        await conveyor.apply(one_step)
        ids = [(await conveyor.execute("quick", {})).execution_id for _ in range(40)]

        async def harass(execution_id: str) -> None:
            for _ in range(200):
                try:
                    await conveyor.signal(execution_id, "poke")
                    await conveyor.resume(execution_id)
                except ConveyorError:
                    return  # refused: it has finished

        await asyncio.wait_for(asyncio.gather(*(harass(e) for e in ids)), 120)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 20)
    assert check(conveyor.store.db, ids) == []
