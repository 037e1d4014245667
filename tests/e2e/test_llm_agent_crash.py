"""An ``llm.agent`` step whose worker is killed (SIGKILL) mid-loop resumes on another worker
without asking the model again for the finished turn and without running its tool call
(a child execution) again."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from conveyor.app import Conveyor
from conveyor.store.history import ExecutionFilter
from tests.e2e.conftest import Side, eventually
from tests.e2e.processes import Workers
from tests.integration.llmserver import LLMServer, Reply, Slow, ToolCall

CHILD = {
    "name": "lookup-order",
    "nodes": [
        {"id": "find", "type": "transform", "config": {"output": {"order": "{{ input.id }}"}}}
    ],
}


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    server = LLMServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def agent_workflow() -> dict[str, object]:
    tool = {
        "name": "lookup_order",
        "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        "workflow": "lookup-order",
    }
    config = {"credential": "local", "model": "m", "prompt": "Where is A-7?", "tools": [tool]}
    return {
        "name": "agent-crash",
        "settings": {"retry": {"max_attempts": 3, "initial_interval": "100ms"}},
        "nodes": [{"id": "agent", "type": "llm.agent", "config": config}],
    }


@pytest.mark.timeout(120)
async def test_a_killed_agent_resumes_mid_loop_without_repeating_its_tool_call(
    app: Conveyor, side: Side, workers: Workers, llm_server: LLMServer
) -> None:
    data = {"provider": "openai", "api_key": "sk-test", "base_url": llm_server.base_url}
    await app.set_credential("local", "llm", data)
    await app.apply(CHILD)
    await app.apply(agent_workflow())
    llm_server.script(
        Reply(tool_calls=(ToolCall("call_1", "lookup_order", {"id": "A-7"}),)),
        Slow(90),  # turn 2: the worker dies while it waits for this answer
        Reply("A-7 is on its way."),
    )
    private = {"CONVEYOR_ALLOW_PRIVATE_NETWORK": "true"}
    first = workers.start(concurrency=4, **private)
    execution_id = (await app.execute("agent-crash", {})).execution_id
    await eventually(
        lambda: len(llm_server.requests) == 2,
        within=60,
        what="the agent asks its second turn",
        diagnose=lambda: f"{side.statuses()}\n{workers.logs()}",
    )
    first.kill()
    workers.start(concurrency=4, **private)
    await eventually(
        lambda: side.statuses([execution_id]).get(execution_id) == "succeeded",
        within=60,
        what="the agent's execution succeeds on the second worker",
        diagnose=workers.logs,
    )
    # Turn 1 was asked once; turn 2 twice (once per worker).
    assert len(llm_server.requests) == 3
    resumed = llm_server.requests[2].messages
    assert resumed[-1]["role"] == "tool"
    assert json.loads(resumed[-1]["content"]) == {"find": {"order": "A-7"}}
    found = await app.store.list_executions(ExecutionFilter(app.workspace_id))
    children = [e for e in found if e["parent_execution_id"] == execution_id]
    assert [c["status"] for c in children] == ["succeeded"]
    detail = await app.store.get_execution(app.workspace_id, execution_id)
    [done] = [s for s in detail["steps"] if s["status"] == "succeeded"]
    assert done["output"]["text"] == "A-7 is on its way."
    assert done["output"]["tool_calls"][0]["result"] == {"find": {"order": "A-7"}}
