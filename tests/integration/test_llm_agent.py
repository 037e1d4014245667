"""The ``llm.agent`` loop against a real local LLM server, with workflow tools run as child
executions (on both backends) and HTTP tools against a real local server: the transcript
the model sees, the turn and token bounds, and a step run again after a failure mid-loop
rebuilding its finished tool calls instead of repeating them."""

from __future__ import annotations

import json
from typing import Any

from conveyor.app import Conveyor
from conveyor.store.history import ExecutionFilter
from tests.integration.httpserver import LocalServer
from tests.integration.llmserver import LLMServer, Reply, Status, ToolCall
from tests.integration.test_runner import execute, workflow
from tests.support import require_bubblewrap

LOOKUP = {
    "name": "lookup_order",
    "description": "Find an order by id",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    "workflow": "lookup-order",
}
CHILD = {
    "name": "lookup-order",
    "nodes": [
        {
            "id": "find",
            "type": "transform",
            "config": {"output": {"order": "{{ input.order_id }}", "status": "shipped"}},
        }
    ],
}


async def prepared(app: Conveyor, server: LLMServer) -> None:
    data = {"provider": "openai", "api_key": "sk-test", "base_url": server.base_url}
    await app.set_credential("local", "llm", data)
    await app.apply(CHILD)


def agent(**config: Any) -> dict[str, Any]:
    return {
        "id": "agent",
        "type": "llm.agent",
        "config": {
            "credential": "local",
            "model": "test-model",
            "prompt": "Where is order A-7?",
            "tools": [LOOKUP],
            **config,
        },
        "retry": {"max_attempts": 2, "initial_interval": "10ms"},
    }


async def children_of(app: Conveyor, execution_id: str) -> list[dict[str, Any]]:
    found = await app.store.list_executions(ExecutionFilter(app.workspace_id))
    return [e for e in found if e["parent_execution_id"] == execution_id]


async def test_the_agent_calls_a_workflow_tool_and_answers(
    conveyor: Conveyor, llm_server: LLMServer
) -> None:
    await prepared(conveyor, llm_server)
    call = ToolCall("call_1", "lookup_order", {"order_id": "A-7"})
    llm_server.script(
        Reply(tool_calls=(call,), input_tokens=40, output_tokens=10),
        Reply("Order A-7 has shipped.", input_tokens=70, output_tokens=8),
    )
    finished = await execute(conveyor, workflow("support", agent()))
    assert finished.status == "succeeded", finished.execution["error"]
    output = finished.step("agent")["output"]
    shipped = {"find": {"order": "A-7", "status": "shipped"}}
    assert output["text"] == "Order A-7 has shipped."
    assert output["turns"] == 2
    assert output["tool_calls"] == [
        {"turn": 1, "name": "lookup_order", "arguments": {"order_id": "A-7"}, "result": shipped}
    ]
    assert output["usage"] == {"input_tokens": 110, "output_tokens": 18, "cached_tokens": 0}
    assert finished.execution["usage_tokens"] == 128
    first, second = llm_server.requests
    assert first.body["tools"] == [
        {
            "type": "function",
            "function": {k: LOOKUP[k] for k in ("name", "description", "parameters")},
        }
    ]
    assert second.messages[-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": json.dumps(shipped),
    }
    assert second.messages[-2]["tool_calls"][0]["id"] == "call_1"
    [child] = await children_of(conveyor, finished.id)
    assert (child["status"], child["parent_node_id"]) == ("succeeded", "agent")


async def test_a_rerun_after_a_failure_mid_loop_reuses_finished_tool_calls(
    conveyor: Conveyor, llm_server: LLMServer
) -> None:
    await prepared(conveyor, llm_server)
    call = ToolCall("call_1", "lookup_order", {"order_id": "A-7"})
    llm_server.script(
        Reply(tool_calls=(call,)),
        Status(500, "the model fell over"),  # turn 2 of the first attempt
        Reply("Shipped."),  # turn 2 of the second attempt
    )
    finished = await execute(conveyor, workflow("resume", agent()))
    assert finished.status == "succeeded", finished.execution["error"]
    failed, succeeded = finished.rows("agent")
    assert "the model fell over" in failed["error"]["message"]
    assert succeeded["output"]["text"] == "Shipped."
    # turn 1 was not asked again, and its tool call did not run again
    assert len(llm_server.requests) == 3
    assert len(await children_of(conveyor, finished.id)) == 1
    last = llm_server.requests[-1].messages
    assert last[-1]["role"] == "tool"
    assert json.loads(last[-1]["content"]) == {"find": {"order": "A-7", "status": "shipped"}}
    assert last[-2]["tool_calls"][0]["function"]["name"] == "lookup_order"
    assert succeeded["output"]["tool_calls"][0]["arguments"] == {"order_id": "A-7"}


async def test_an_http_tool_gets_the_arguments_and_a_per_call_idempotency_key(
    conveyor: Conveyor, llm_server: LLMServer, http_server: LocalServer
) -> None:
    await prepared(conveyor, llm_server)
    echo = {"name": "echo", "http": {"method": "POST", "url": f"{http_server.base_url}/echo"}}
    llm_server.script(
        Reply(tool_calls=(ToolCall("c1", "echo", {"say": "hi"}), ToolCall("c2", "nope", {}))),
        Reply("done"),
    )
    finished = await execute(conveyor, workflow("http-tool", agent(tools=[echo])))
    assert finished.status == "succeeded", finished.execution["error"]
    [request] = http_server.requests_to("/echo")
    assert request.idempotency_key == f"{finished.id}:agent:turn1:0"
    assert json.loads(request.body) == {"say": "hi"}
    results = [m for m in llm_server.requests[1].messages if m["role"] == "tool"]
    assert json.loads(results[0]["content"])["json"] == {"say": "hi"}
    assert json.loads(results[1]["content"]) == {"error": "there is no tool named 'nope'"}


async def test_a_rerun_reuses_finished_http_tool_calls_and_answers(
    conveyor: Conveyor, llm_server: LLMServer, http_server: LocalServer
) -> None:
    """HTTP tool calls and the model's answers are step checkpoints: a rerun after a
    failure in turn 2 asks the model only for turn 2 and calls no tool again."""
    await prepared(conveyor, llm_server)
    echo = {"name": "echo", "http": {"method": "POST", "url": f"{http_server.base_url}/echo"}}
    llm_server.script(
        Reply(tool_calls=(ToolCall("c1", "echo", {"say": "once"}),)),
        Status(500, "the model fell over"),  # turn 2 of the first attempt
        Reply("Said once."),  # turn 2 of the second attempt
    )
    finished = await execute(conveyor, workflow("http-resume", agent(tools=[echo])))
    assert finished.status == "succeeded", finished.execution["error"]
    assert [r["attempt"] for r in finished.rows("agent")] == [1, 2]
    assert len(http_server.requests_to("/echo")) == 1
    assert len(llm_server.requests) == 3
    last = llm_server.requests[-1].messages
    assert last[-1]["role"] == "tool"
    assert json.loads(last[-1]["content"])["json"] == {"say": "once"}
    output = finished.step("agent")["output"]
    assert output["text"] == "Said once."
    assert output["tool_calls"][0]["result"]["json"] == {"say": "once"}


async def test_the_turn_limit_and_the_token_budget_end_the_loop(
    conveyor: Conveyor, llm_server: LLMServer
) -> None:
    await prepared(conveyor, llm_server)
    again = Reply(tool_calls=(ToolCall("c", "lookup_order", {"order_id": "B"}),))
    llm_server.script(again, again)
    finished = await execute(conveyor, workflow("turns", agent(max_turns=2)))
    assert finished.status == "failed"
    [row] = finished.rows("agent")  # non-retryable: one attempt
    assert "used its 2 turns without a final answer" in row["error"]["message"]

    llm_server.script(Reply(tool_calls=again.tool_calls, input_tokens=900, output_tokens=200))
    finished = await execute(conveyor, workflow("budget", agent(token_budget=1000)))
    assert finished.status == "failed"
    [row] = finished.rows("agent")
    assert "used 1100 tokens, over its token_budget of 1000" in row["error"]["message"]


async def test_a_tool_workflow_that_does_not_exist_fails_the_step_at_once(
    conveyor: Conveyor, llm_server: LLMServer
) -> None:
    await prepared(conveyor, llm_server)
    ghost = {**LOOKUP, "workflow": "no-such-workflow"}
    llm_server.script(Reply(tool_calls=(ToolCall("c", "lookup_order", {"order_id": "B"}),)))
    finished = await execute(conveyor, workflow("ghost", agent(tools=[ghost])))
    assert finished.status == "failed"
    [row] = finished.rows("agent")
    assert row["error"]["non_retryable"] is True
    assert "no-such-workflow" in row["error"]["message"]


async def test_a_code_tool_runs_in_the_sandbox_with_the_arguments(
    conveyor: Conveyor, llm_server: LLMServer
) -> None:
    require_bubblewrap()
    await prepared(conveyor, llm_server)
    double = {
        "name": "double",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "code": "def main(input):\n    return {'doubled': input['n'] * 2}\n",
    }
    broken = {"name": "broken", "code": "def main(input):\n    return 1 / 0\n"}
    llm_server.script(
        Reply(tool_calls=(ToolCall("c1", "double", {"n": 21}), ToolCall("c2", "broken", {}))),
        Reply("42, and the other tool failed."),
    )
    finished = await execute(conveyor, workflow("code-tool", agent(tools=[double, broken])))
    assert finished.status == "succeeded", finished.execution["error"]
    results = [m for m in llm_server.requests[1].messages if m["role"] == "tool"]
    assert json.loads(results[0]["content"]) == {"doubled": 42}
    assert "ZeroDivisionError" in json.loads(results[1]["content"])["error"]


def test_a_code_tool_may_not_hold_templates() -> None:
    from pydantic import ValidationError

    from conveyor.nodes.agent import AgentTool

    try:
        AgentTool(name="t", code="def main(input):\n    return '{{ secrets.x }}'\n")
    except ValidationError as exc:
        assert "template syntax" in str(exc)
    else:
        raise AssertionError("a template in a code tool was accepted")
