"""Errors a developer can debug: an unexpected exception in node code keeps a trimmed,
redacted traceback of the node's own frames, and every step error names the step's
position in the run (its step index), on both backends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.nodes.base import NodeContext, node
from conveyor.worker import Worker

SECRET = "sk-live-4f9a8b7c6d5e"


class TokenConfig(BaseModel):
    token: str


def _parse(token: str) -> int:
    return int(token, 16)  # raises ValueError naming the token


@node("test.parse_token", config=TokenConfig)
def parse_token(ctx: NodeContext, config: TokenConfig) -> dict[str, Any]:
    """Sync on purpose: its frames come back through the worker-thread adapter."""
    return {"value": _parse(config.token)}


def flow(name: str, failing: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "settings": {"retry": {"max_attempts": 1}},  # one failed attempt to look at
        "nodes": [
            {"id": "prep", "type": "transform", "config": {"output": "{{ input.token }}"}},
            {"id": "other", "type": "transform", "config": {"output": 1}},
            {"needs": ["prep", "other"], **failing},
        ],
    }


async def run(app: Conveyor, definition: dict[str, Any], input: Any) -> dict[str, Any]:
    app.registry.register(parse_token)
    await app.apply(definition)
    execution_id = (await app.execute(definition["name"], input)).execution_id
    worker = Worker(app.store, app.registry, SystemClock())
    await asyncio.wait_for(worker.run_one(execution_id), timeout=30)
    detail = await app.store.get_execution(app.workspace_id, execution_id)
    detail["events"] = await app.store.events_after(execution_id)
    return detail


def step(detail: dict[str, Any], node_id: str) -> dict[str, Any]:
    [row] = [s for s in detail["steps"] if s["node_id"] == node_id]
    return row


async def test_an_unexpected_exception_keeps_a_redacted_traceback_of_node_code(
    conveyor: Conveyor,
) -> None:
    failing = {
        "id": "parse",
        "type": "test.parse_token",
        "config": {"token": "{{ nodes.prep.output }}"},
    }
    detail = await run(conveyor, flow("unexpected", failing), {"token": SECRET})
    assert detail["status"] == "failed"
    error = step(detail, "parse")["error"]
    assert error["type"] == "ValueError"
    assert error["message"] == "invalid literal for int() with base 16: '[redacted]'"
    trace = error["traceback"]
    lines = trace.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: invalid literal for int() with base 16: '[redacted]'"
    # The node's own frames, starting at the node function: none of the engine's.
    assert "in parse_token" in lines[1], trace
    assert "in _parse" in trace and "return int(token, 16)" in trace
    for plumbing in ("conveyor/engine/", "conveyor/nodes/base.py", "asyncio", "concurrent"):
        assert plumbing not in trace, trace
    # The rendered value is nowhere in what was stored or published.
    assert SECRET not in json.dumps(error)
    assert SECRET not in json.dumps(detail["error"])
    assert SECRET not in json.dumps([e["data"] for e in detail["events"]], default=str)
    # Started third (prep and other run first, in either order).
    assert error["step_index"] == 3 and step(detail, "parse")["step_index"] == 3
    assert {step(detail, "prep")["step_index"], step(detail, "other")["step_index"]} == {1, 2}
    assert detail["error"]["node_id"] == "parse"
    assert detail["error"]["step_index"] == 3
    assert detail["error"]["traceback"] == trace


async def test_a_node_error_keeps_its_message_and_gets_a_step_index_but_no_traceback(
    conveyor: Conveyor,
) -> None:
    failing = {"id": "decline", "type": "fail", "config": {"message": "card declined"}}
    detail = await run(conveyor, flow("deliberate", failing), {"token": SECRET})
    error = step(detail, "decline")["error"]
    assert error == {
        "type": "NodeError",
        "message": "card declined",
        "non_retryable": True,  # the fail node's default
        "step_index": 3,
    }
    assert detail["error"] == {"node_id": "decline", **error}
