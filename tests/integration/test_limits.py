"""Size limits on real databases: what Conveyor refuses to accept, and steps whose output
or logs are over their limits."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.engine.limits import Limits, json_size
from conveyor.errors import PayloadTooLarge
from conveyor.nodes.base import NodeContext, node
from conveyor.nodes.builtin import build_registry
from conveyor.store.history import ExecutionFilter
from conveyor.worker import Worker

LIMITS = Limits(input_bytes=1000, definition_bytes=2000, step_output_bytes=500, log_lines=5)


@pytest.fixture
async def limited(database_url: str) -> AsyncIterator[Conveyor]:
    app = await Conveyor.open(database_url, build_registry(entry_points=False), limits=LIMITS)
    try:
        yield app
    finally:
        app.close()


def _one_node(name: str, node_type: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "nodes": [{"id": "n", "type": node_type, **fields}]}


async def test_inputs_signal_data_and_definitions_over_their_limits_are_refused(
    limited: Conveyor,
) -> None:
    await limited.apply(_one_node("small", "transform", config={"output": "{{ input }}"}))
    with pytest.raises(PayloadTooLarge, match="CONVEYOR_MAX_INPUT_BYTES"):
        await limited.execute("small", {"blob": "x" * 2000})
    big = _one_node("big", "transform", config={"output": "y" * 3000})
    with pytest.raises(PayloadTooLarge, match="CONVEYOR_MAX_DEFINITION_BYTES"):
        await limited.apply(big)
    enqueued = await limited.execute("small", {"blob": "x" * 10})
    with pytest.raises(PayloadTooLarge, match="the signal data is"):
        await limited.signal(enqueued.execution_id, "go", {"blob": "x" * 2000})
    rows = await limited.store.list_executions(ExecutionFilter(limited.workspace_id))
    assert [r["id"] for r in rows] == [enqueued.execution_id]


async def _run(app: Conveyor, definition: dict[str, Any]) -> dict[str, Any]:
    await app.apply(definition)
    execution_id = (await app.execute(definition["name"])).execution_id
    worker = Worker(app.store, app.registry, SystemClock(), limits=app.limits)
    await asyncio.wait_for(worker.run_one(execution_id), timeout=30)
    return await app.store.get_execution(app.workspace_id, execution_id)


async def test_a_step_output_over_the_limit_fails_the_step_without_retries(
    limited: Conveyor,
) -> None:
    definition = _one_node(
        "huge-output",
        "transform",
        config={"output": "{{ 'z' * 600 }}"},
        retry={"max_attempts": 3, "initial_interval": "1ms"},
    )
    detail = await _run(limited, definition)
    assert detail["status"] == "failed"
    [step] = detail["steps"]
    assert step["status"] == "failed" and step["output"] is None
    assert step["error"]["type"] == "StepOutputTooLarge"
    assert step["error"]["non_retryable"] is True
    assert (
        "over the limit of 500 bytes (CONVEYOR_MAX_STEP_OUTPUT_BYTES)" in (step["error"]["message"])
    )


async def test_log_lines_past_the_limit_are_stored_as_one_marker(limited: Conveyor) -> None:
    @node("test.chatty")
    async def chatty(ctx: NodeContext, config: Any) -> str:
        for i in range(50):
            ctx.log.info(f"line {i}")
        return "done"

    limited.registry.register(chatty)
    detail = await _run(limited, _one_node("chatty", "test.chatty"))
    assert detail["status"] == "succeeded"
    [step] = detail["steps"]
    messages = [line["message"] for line in step["logs"]]
    assert messages[:5] == [f"line {i}" for i in range(5)]
    assert messages[5:] == [
        "45 more log lines dropped: the limit is 5 per step (CONVEYOR_MAX_LOG_LINES)"
    ]


async def test_a_large_input_is_written_once_not_at_every_step(tmp_path: Path) -> None:
    """SQLite rewrites a whole row on any update, overflow pages and all: an input kept in the
    executions row, which every transition updates, was written again at each step, leaving
    the file about twice the input's size (the old copies on the free list) and the WAL
    many times it. PostgreSQL keeps an unchanged large value out of line on update."""
    database = tmp_path / "payload.db"
    app = await Conveyor.open(f"sqlite:///{database}", build_registry(entry_points=False))
    payload = {"n": 3, "rows": [{"id": i, "name": "x" * 40} for i in range(8000)]}
    size = json_size(payload)
    chain = [
        {"id": f"s{i}", "type": "transform", "config": {"output": "{{ input.n }}"}}
        | ({"needs": f"s{i - 1}"} if i else {})
        for i in range(6)
    ]
    try:
        await app.apply({"name": "chain", "nodes": chain})
        execution_id = (await app.execute("chain", payload)).execution_id
        worker = Worker(app.store, app.registry, SystemClock())
        await asyncio.wait_for(worker.run_one(execution_id), timeout=30)
        detail = await app.store.get_execution(app.workspace_id, execution_id)
    finally:
        app.close()
    assert detail["status"] == "succeeded" and detail["input"] == payload
    with sqlite3.connect(database) as conn:
        free_pages, page_size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("freelist_count", "page_size")
        )
    assert free_pages * page_size < size / 4, (free_pages * page_size, size)
