"""Run controls and durable waiting against real databases, with an in-process worker:
signals, child workflows, pause and resume, retry and replay reuse, dead-lettering, and the
reasons a queued execution gives for not running."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.errors import Conflict, InputError
from conveyor.nodes.base import NodeContext, node
from conveyor.store.executions import EventRecord
from conveyor.store.history import child_executions
from conveyor.store.tables import executions
from conveyor.worker import Worker

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


class Watcher:
    """Wakes waiters when an execution's events are committed (no polling, no sleeping)."""

    def __init__(self, app: Conveyor) -> None:
        self.seen: dict[str, list[str]] = {}
        self.condition = asyncio.Condition()
        app.store.listeners.append(self.on_events)

    def on_events(self, records: list[EventRecord]) -> None:
        for record in records:
            self.seen.setdefault(record.execution_id, []).append(record.type)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.condition:
            self.condition.notify_all()

    async def until(self, execution_id: str, kind: str, within: float = 30) -> None:
        async with asyncio.timeout(within), self.condition:
            await self.condition.wait_for(lambda: kind in self.seen.get(execution_id, []))


@pytest.fixture
async def serving(conveyor: Conveyor) -> AsyncIterator[tuple[Conveyor, Watcher, Counter[str]]]:
    """The app, an event watcher, and a counter of node calls; a worker serves meanwhile."""
    calls: Counter[str] = Counter()

    @node("test.count")
    async def count(ctx: NodeContext, config: Any) -> dict[str, Any]:
        calls[ctx.node_id] += 1
        if ctx.node_id.startswith("flaky") and calls[ctx.node_id] == 1:
            raise RuntimeError("first call fails")
        return {"node": ctx.node_id, "input": config.model_dump()}

    conveyor.registry.register(count)
    watcher = Watcher(conveyor)
    stop = asyncio.Event()
    worker = Worker(
        conveyor.store,
        conveyor.registry,
        SystemClock(),
        concurrency=4,
        poll=timedelta(milliseconds=50),
        hold_timers_up_to=timedelta(0),
    )
    task = asyncio.create_task(worker.serve(stop))
    try:
        yield conveyor, watcher, calls
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def run(app: Conveyor, definition: dict[str, Any], input: Any = None) -> str:
    await app.apply(definition)
    return (await app.execute(definition["name"], input or {})).execution_id


async def detail(app: Conveyor, execution_id: str) -> dict[str, Any]:
    return await app.store.get_execution(app.workspace_id, execution_id)


APPROVAL = {
    "name": "approval",
    "nodes": [
        {"id": "ask", "type": "test.count"},
        {
            "id": "approve",
            "type": "wait_for_event",
            "needs": ["ask"],
            "config": {"event": "approved", "timeout": "1h"},
        },
        {
            "id": "ship",
            "type": "transform",
            "needs": ["approve"],
            "config": {"output": "by {{ nodes.approve.output.by }}"},
        },
    ],
}


async def test_a_signal_resumes_a_waiting_execution_with_its_data(serving: Any) -> None:
    app, watcher, _ = serving
    execution_id = await run(app, APPROVAL)
    await watcher.until(execution_id, "execution.waiting")
    waiting = await detail(app, execution_id)
    assert waiting["status"] == "waiting"
    assert waiting["blocked_reason"].startswith("waiting for signal approved until ")
    await app.signal(execution_id, "approved", {"by": "ann"})
    await watcher.until(execution_id, "execution.succeeded")
    assert (await detail(app, execution_id))["result"] == {"ship": "by ann"}


async def test_a_signal_sent_before_the_wait_is_kept_for_it(serving: Any) -> None:
    app, watcher, _ = serving
    definition = {
        **APPROVAL,
        "name": "early",
        "nodes": [
            {"id": "slow", "type": "wait", "config": {"duration": "300ms"}},
            *APPROVAL["nodes"][1:],
        ],
    }
    definition["nodes"][1] = {**definition["nodes"][1], "needs": ["slow"]}
    execution_id = await run(app, definition)
    await app.signal(execution_id, "approved", {"by": "bob"})
    await watcher.until(execution_id, "execution.succeeded")
    assert (await detail(app, execution_id))["result"] == {"ship": "by bob"}


async def test_a_wait_for_event_times_out(serving: Any) -> None:
    app, watcher, _ = serving
    definition = {
        "name": "impatient",
        "nodes": [
            {
                "id": "approve",
                "type": "wait_for_event",
                "config": {"event": "approved", "timeout": "200ms"},
            }
        ],
    }
    execution_id = await run(app, definition)
    await watcher.until(execution_id, "execution.failed")
    failed = await detail(app, execution_id)
    assert failed["error"]["type"] == "NodeTimeout"
    assert failed["error"]["node_id"] == "approve"


async def test_signals_to_finished_executions_are_refused(serving: Any) -> None:
    app, watcher, _ = serving
    execution_id = await run(app, {"name": "quick", "nodes": [{"id": "a", "type": "test.count"}]})
    await watcher.until(execution_id, "execution.succeeded")
    with pytest.raises(Conflict):
        await app.signal(execution_id, "approved")
    with pytest.raises(InputError):
        await app.signal(execution_id, "child:forged")


async def test_workflow_call_runs_a_child_and_returns_its_result(serving: Any) -> None:
    app, watcher, _ = serving
    await app.apply(
        {
            "name": "child",
            "nodes": [
                {"id": "double", "type": "transform", "config": {"output": "{{ input.n * 2 }}"}}
            ],
        }
    )
    parent = {
        "name": "parent",
        "nodes": [
            {
                "id": "call",
                "type": "workflow.call",
                "config": {"workflow": "child", "input": {"n": "{{ input.n }}"}},
            },
            {
                "id": "use",
                "type": "transform",
                "needs": ["call"],
                "config": {"output": "{{ nodes.call.output.double + 1 }}"},
            },
        ],
    }
    execution_id = await run(app, parent, {"n": 20})
    await watcher.until(execution_id, "execution.succeeded")
    assert (await detail(app, execution_id))["result"] == {"use": 41}
    children = [
        e for e in await app.store.list_executions(_filter(app)) if e["trigger_type"] == "workflow"
    ]
    assert len(children) == 1 and children[0]["parent_execution_id"] == execution_id
    # The execution page's query finds the child, and only in the parent's workspace.
    created = (await detail(app, execution_id))["created_at"]
    found = await app.store.read(child_executions, app.workspace_id, execution_id, created)
    assert [(c["id"], c["parent_node_id"]) for c in found] == [(children[0]["id"], "call")]
    assert await app.store.read(child_executions, "elsewhere", execution_id, created) == []


async def test_a_failing_child_fails_the_calling_step(serving: Any) -> None:
    app, watcher, _ = serving
    await app.apply(
        {
            "name": "bad-child",
            "nodes": [{"id": "boom", "type": "fail", "config": {"message": "out of stock"}}],
        }
    )
    parent = {
        "name": "parent2",
        "nodes": [{"id": "call", "type": "workflow.call", "config": {"workflow": "bad-child"}}],
    }
    execution_id = await run(app, parent)
    await watcher.until(execution_id, "execution.failed")
    error = (await detail(app, execution_id))["error"]
    assert error["node_id"] == "call" and "out of stock" in error["message"]


async def test_pause_holds_new_steps_until_resume(serving: Any) -> None:
    app, watcher, calls = serving
    definition = {
        "name": "pausable",
        "nodes": [
            {"id": "first", "type": "wait", "config": {"duration": "300ms"}},
            {"id": "second", "type": "test.count", "needs": ["first"]},
        ],
    }
    execution_id = await run(app, definition)
    await watcher.until(execution_id, "step.waiting")
    await app.pause(execution_id)
    await watcher.until(execution_id, "execution.waiting")
    paused = await detail(app, execution_id)
    assert paused["status"] == "waiting" and paused["blocked_reason"].startswith("paused")
    assert calls["second"] == 0
    await app.resume(execution_id)
    await watcher.until(execution_id, "execution.succeeded")
    assert calls["second"] == 1


async def test_retry_reruns_only_the_failed_step_and_what_follows(serving: Any) -> None:
    app, watcher, calls = serving
    definition = {
        "name": "retryable",
        "settings": {"retry": {"max_attempts": 1}},  # fails at once; retried by hand
        "nodes": [
            {"id": "a", "type": "test.count"},
            {"id": "flaky", "type": "test.count", "needs": ["a"]},
            {"id": "c", "type": "test.count", "needs": ["flaky"]},
            {"id": "side", "type": "test.count", "needs": ["a"]},
        ],
    }
    execution_id = await run(app, definition)
    await watcher.until(execution_id, "execution.failed")
    assert calls == {"a": 1, "flaky": 1, "side": 1}
    retried = await app.retry(execution_id)
    await watcher.until(retried.execution_id, "execution.succeeded")
    assert calls == {"a": 1, "flaky": 2, "side": 1, "c": 1}
    new = await detail(app, retried.execution_id)
    assert new["retry_of"] == execution_id and new["trigger_type"] == "retry"
    with pytest.raises(Conflict):
        await app.retry(retried.execution_id)


async def test_replay_from_a_node_reruns_it_and_its_descendants(serving: Any) -> None:
    app, watcher, calls = serving
    definition = {
        "name": "replayable",
        "nodes": [
            {"id": "a", "type": "test.count"},
            {"id": "b", "type": "test.count", "needs": ["a"]},
            {"id": "c", "type": "test.count", "needs": ["b"]},
            {"id": "side", "type": "test.count", "needs": ["a"]},
        ],
    }
    execution_id = await run(app, definition, {"v": 1})
    await watcher.until(execution_id, "execution.succeeded")
    replayed = await app.replay(execution_id, "b", input={"v": 2})
    await watcher.until(replayed.execution_id, "execution.succeeded")
    assert calls == {"a": 1, "b": 2, "c": 2, "side": 1}
    assert (await detail(app, replayed.execution_id))["input"] == {"v": 2}
    with pytest.raises(InputError, match="node 'nope' does not exist in version 1"):
        await app.replay(execution_id, "nope")


async def test_replay_on_the_current_version_refuses_a_removed_node(serving: Any) -> None:
    app, watcher, _ = serving
    definition = {
        "name": "evolving",
        "nodes": [
            {"id": "a", "type": "test.count"},
            {"id": "old", "type": "test.count", "needs": ["a"]},
        ],
    }
    execution_id = await run(app, definition)
    await watcher.until(execution_id, "execution.succeeded")
    await app.apply(
        {
            "name": "evolving",
            "nodes": [
                {"id": "a", "type": "test.count"},
                {"id": "new", "type": "test.count", "needs": ["a"]},
            ],
        }
    )
    with pytest.raises(InputError, match="node 'old' does not exist in version 2"):
        await app.replay(execution_id, "old", current=True)
    pinned = await app.replay(execution_id, "old")
    await watcher.until(pinned.execution_id, "execution.succeeded")
    assert pinned.version == 1


async def test_a_crash_looping_execution_is_dead_lettered(conveyor: Conveyor) -> None:
    await conveyor.apply(
        {"name": "loop", "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}]}
    )
    enqueued = await conveyor.execute("loop")
    with conveyor.store.db.write() as conn:
        conn.execute(update(executions).values(crashes=3))
    worker = Worker(conveyor.store, conveyor.registry, SystemClock(), max_recoveries=2)
    assert await worker.run_one(enqueued.execution_id) == "failed"
    failed = await detail(conveyor, enqueued.execution_id)
    assert failed["error"]["type"] == "DeadLettered"
    assert "3 times" in failed["error"]["message"]


async def test_queued_executions_say_why_they_are_not_running(conveyor: Conveyor) -> None:
    await conveyor.apply(
        {
            "name": "limited",
            "settings": {
                "concurrency": {"key": "user:{{ input.user }}", "key_limit": 1},
                "rate_limit": {"limit": 5, "period": "1m"},
            },
            "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
        }
    )
    first = await conveyor.execute("limited", {"user": 7})
    second = await conveyor.execute("limited", {"user": 7})
    other = await conveyor.execute("limited", {"user": 8})
    claimed = await conveyor.store.claim("w1", lease_seconds=30, limit=10)
    assert sorted(c.id for c in claimed) == sorted([first.execution_id, other.execution_id])
    blocked = await detail(conveyor, second.execution_id)
    assert blocked["status"] == "queued"
    assert blocked["blocked_reason"] == "concurrency key user:7 at 1/1"


def _filter(app: Conveyor) -> Any:
    from conveyor.store.history import ExecutionFilter

    return ExecutionFilter(workspace_id=app.workspace_id)
