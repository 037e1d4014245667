"""Random graphs run for real, checked against a reference scheduler written here: random
DAGs of conditions (fixed truth values, so each takes a known branch), instant transforms
and short naps, edges with and without branch labels, some joins waiting for the ``first``
edge; each run by an in-process worker on a real database (SQLite and PostgreSQL). From the
step rows and the events: no step started before what it needs had finished (one live
upstream for ``first``), exactly the nodes the reference skips were skipped, and every node
ran at most once."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.nodes.base import NodeContext, node
from conveyor.nodes.builtin import build_registry
from conveyor.worker import Worker

EXAMPLES = 40
_names = itertools.count(1)


class Nap(BaseModel):
    seconds: float


@node("test.nap", config=Nap)
async def nap(ctx: NodeContext, config: Nap) -> dict[str, Any]:
    await asyncio.sleep(config.seconds)
    return {"napped": config.seconds}


@dataclass(frozen=True)
class Spec:
    """One generated node: its type's own truth value (conditions), what it needs (source,
    branch or None) and whether it waits for the first live edge."""

    id: str
    kind: str
    truth: bool
    needs: tuple[tuple[str, str | None], ...]
    first: bool

    def as_node(self) -> dict[str, Any]:
        config: dict[str, Any]
        if self.kind == "condition":
            config = {"if": self.truth}
        elif self.kind == "test.nap":
            config = {"seconds": 0.02}
        else:
            config = {"output": {"id": self.id}}
        written: dict[str, Any] = {"id": self.id, "type": self.kind, "config": config}
        if self.needs:
            written["needs"] = [s if b is None else f"{s}.{b}" for s, b in self.needs]
        if self.first:
            written["wait_for"] = "first"
        return written


@st.composite
def graphs(draw: st.DrawFn) -> list[Spec]:
    specs: list[Spec] = []
    for index in range(draw(st.integers(2, 9))):
        kind = draw(st.sampled_from(["condition", "transform", "test.nap"]))
        earlier = draw(st.sets(st.integers(0, index - 1), max_size=3)) if index else set()
        needs = []
        for position in sorted(earlier):
            source = specs[position]
            branch = None
            if source.kind == "condition" and draw(st.booleans()):
                branch = draw(st.sampled_from(["true", "false"]))
            needs.append((source.id, branch))
        first = len(needs) > 1 and draw(st.integers(0, 3)) == 0
        specs.append(Spec(f"n{index}", kind, draw(st.booleans()), tuple(needs), first))
    return specs


def reference(specs: list[Spec]) -> dict[str, str]:
    """Each node's fate, in definition order (a topological order here): it runs when it
    needs nothing or one of its incoming edges fires (the source ran and, for a labelled
    edge, took that branch); otherwise it is skipped."""
    fate: dict[str, str] = {}
    branch: dict[str, str | None] = {}
    for spec in specs:
        fires = [fate[s] == "succeeded" and (b is None or branch[s] == b) for s, b in spec.needs]
        fate[spec.id] = "succeeded" if not spec.needs or any(fires) else "skipped"
        if spec.kind == "condition":
            branch[spec.id] = "true" if spec.truth else "false"
        else:
            branch[spec.id] = None
    return fate


class Bench:
    """One database and one event loop for every example of a test."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        registry = build_registry()
        registry.register(nap)
        self.app = self.loop.run_until_complete(Conveyor.open(database_url, registry))
        self.seconds: list[float] = []

    def run(self, definition: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        began = time.monotonic()
        result = self.loop.run_until_complete(self._run(definition))
        self.seconds.append(time.monotonic() - began)
        return result

    async def _run(self, definition: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        await self.app.apply(definition)
        execution_id = (await self.app.execute(definition["name"], {})).execution_id
        worker = Worker(self.app.store, self.app.registry, SystemClock())
        await asyncio.wait_for(worker.run_one(execution_id), timeout=30)
        execution = await self.app.store.get_execution(self.app.workspace_id, execution_id)
        return execution, await self.app.store.events_after(execution_id)

    def close(self) -> None:
        self.app.close()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture
def bench(database_url: str) -> Iterator[Bench]:
    made = Bench(database_url)
    try:
        yield made
    finally:
        made.close()
        total = sum(made.seconds)
        print(f"\n{len(made.seconds)} random graphs run in {total:.1f}s")


def check_order(specs: list[Spec], execution: dict[str, Any], events: list[dict[str, Any]]) -> None:
    fate = reference(specs)
    steps: dict[str, list[dict[str, Any]]] = {}
    for step in execution["steps"]:
        steps.setdefault(step["node_id"], []).append(step)
    assert execution["status"] == "succeeded", execution
    assert sorted(steps) == sorted(fate), "a node has no step row, or an unknown one has"
    for node_id, rows in steps.items():
        assert len(rows) == 1, f"{node_id} has {len(rows)} step rows: ran more than once"
        assert rows[0]["status"] == fate[node_id], (node_id, rows[0], fate)
    started = _event_ids(events, "step.started")
    ended = _event_ids(events, "step.succeeded") | _event_ids(events, "step.skipped")
    assert set(started) == {n for n, f in fate.items() if f == "succeeded"}, started
    assert set(_event_ids(events, "step.skipped")) == {n for n, f in fate.items() if f == "skipped"}
    for spec in specs:
        if fate[spec.id] != "succeeded" or not spec.needs:
            continue
        row = steps[spec.id][0]
        upstream = [s for s, _ in spec.needs]
        done_before = [s for s in upstream if ended[s] < started[spec.id]]
        ran_before = [
            s
            for s in done_before
            if fate[s] == "succeeded" and steps[s][0]["finished_at"] <= row["started_at"]
        ]
        if spec.first:
            assert ran_before, f"{spec.id} started before any of {upstream} finished"
        else:
            assert done_before == upstream, f"{spec.id} started before all of {upstream} ended"
            for source in upstream:
                if fate[source] == "succeeded":
                    assert steps[source][0]["finished_at"] <= row["started_at"], (spec.id, source)


def _event_ids(events: list[dict[str, Any]], kind: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for event in events:
        if event["type"] == kind:
            node_id = event["data"]["node_id"]
            assert node_id not in found, f"two {kind} events for {node_id}"
            found[node_id] = int(event["id"])
    return found


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=graphs())
def test_random_graphs_run_in_the_order_the_reference_allows(
    bench: Bench, specs: list[Spec]
) -> None:
    definition = {"name": f"random-{next(_names)}", "nodes": [s.as_node() for s in specs]}
    execution, events = bench.run(definition)
    check_order(specs, execution, events)


def test_a_step_output_the_database_cannot_hold_fails_the_step_not_the_execution(
    bench: Bench,
) -> None:
    """An integer past 64 bits once failed the write of the step's outcome: the execution's
    task died, and it stayed running (``conveyor run`` waited forever)."""
    definition = {
        "name": "too-big",
        "nodes": [
            {"id": "big", "type": "transform", "config": {"output": "{{ 2 ** 64 }}"}},
            {"id": "after", "type": "transform", "needs": ["big"], "config": {"output": 1}},
        ],
    }
    execution, events = bench.run(definition)
    assert execution["status"] == "failed", execution
    assert "cannot be stored" in str(execution["error"]), execution["error"]
    steps = {s["node_id"]: s for s in execution["steps"]}
    assert steps["big"]["status"] == "failed" and steps["big"]["attempt"] == 1
    assert "after" not in steps or steps["after"]["status"] == "skipped"
    assert events[-1]["type"] == "execution.failed", [e["type"] for e in events]
