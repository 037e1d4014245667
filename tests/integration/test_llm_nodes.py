"""The ``llm.chat`` node against a real local OpenAI-compatible (and Anthropic-style) server:
plain and streamed answers, JSON with one repair, tool calls, the failure paths (a refused
key, a rate limit with Retry-After, a timeout, a stream cut midway), and token usage rolled
up into the execution and the statistics on both backends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from conveyor.app import Conveyor
from conveyor.engine.interfaces import ExecutionUser, SystemClock
from conveyor.errors import HttpStatusError, NodeError
from conveyor.nodes.base import Credential, NetworkPolicy, NodeContext
from conveyor.nodes.llm import LlmChat, LlmChatConfig
from conveyor.nodes.llm_prices import Price
from conveyor.store import accounts, statistics
from conveyor.store.history import ExecutionFilter
from conveyor.worker import Worker
from tests.integration.llmserver import Cut, LLMServer, Reply, Slow, Status, ToolCall
from tests.integration.test_runner import execute, fake_time_app, workflow
from tests.support import FakeClock

__all__ = ["fake_time_app"]  # a fixture, imported for the tests below


class Credentials:
    """A workspace's credentials as a step sees them (the CredentialSource protocol)."""

    def __init__(self, *found: Credential) -> None:
        self.found = {c.name: c for c in found}

    async def get(self, name: str) -> Credential:
        if name not in self.found:
            raise NodeError(f"no credential named '{name}'", non_retryable=True)
        return self.found[name]


class NoServices:
    async def notify(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        raise AssertionError("llm.chat notifies nobody")

    async def start_child(self, *args: Any) -> str:
        raise AssertionError("llm.chat starts no child")


def llm_credentials(server: LLMServer, api_key: str = "sk-test") -> Credentials:
    return Credentials(
        Credential(
            "local", "llm", {"provider": "openai", "api_key": api_key, "base_url": server.base_url}
        ),
        Credential(
            "claude",
            "llm",
            {"provider": "anthropic", "api_key": api_key, "base_url": server.base_url},
        ),
        Credential("hook", "webhook_secret", {"secret": "s"}),
    )


def context(server: LLMServer, live: list[tuple[str, dict[str, Any]]] | None = None) -> NodeContext:
    return NodeContext(
        execution_id="e1",
        workflow_id="w1",
        node_id="ask",
        attempt=1,
        services=NoServices(),
        clock=lambda: datetime.now(UTC),
        credentials=llm_credentials(server),
        network=NetworkPolicy(allow_private=True),
        live=None if live is None else lambda kind, data: live.append((kind, data)),
    )


async def chat(
    server: LLMServer,
    config: dict[str, Any],
    live: list[tuple[str, dict[str, Any]]] | None = None,
    node: LlmChat | None = None,
) -> Any:
    full = {"credential": "local", "model": "test-model", **config}
    ctx = context(server, live)
    return await (node or LlmChat()).run(ctx, LlmChatConfig.model_validate(full))


# -- answers ---------------------------------------------------------------------------------


async def test_a_plain_answer_with_usage_model_and_the_request_sent(llm_server: LLMServer) -> None:
    llm_server.script(
        Reply("Paris.", input_tokens=21, output_tokens=3, cached_tokens=8, model="test-model-2026")
    )
    output = await chat(
        llm_server,
        {
            "system": "Be brief.",
            "prompt": "Capital of France?",
            "temperature": 0.2,
            "max_tokens": 50,
            "stream": False,
        },
    )
    assert output == {
        "text": "Paris.",
        "tool_calls": [],
        "model": "test-model-2026",
        "usage": {"input_tokens": 21, "output_tokens": 3, "cached_tokens": 8},
        "finish_reason": "stop",
    }
    [request] = llm_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.header("authorization") == "Bearer sk-test"
    assert request.header("idempotency-key") == "e1:ask"
    assert request.body == {
        "model": "test-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
    }


async def test_a_streamed_answer_arrives_as_live_deltas_and_the_output_is_the_final_text(
    llm_server: LLMServer,
) -> None:
    llm_server.script(Reply("one two three", chunks=("one", " two", " three"), output_tokens=7))
    live: list[tuple[str, dict[str, Any]]] = []
    output = await chat(llm_server, {"prompt": "count"}, live)
    assert [(kind, data["text"]) for kind, data in live] == [
        ("step.delta", "one"),
        ("step.delta", " two"),
        ("step.delta", " three"),
    ]
    assert all(data["node_id"] == "ask" and data["attempt"] == 1 for _, data in live)
    assert output["text"] == "one two three"
    assert output["usage"] == {"input_tokens": 10, "output_tokens": 7, "cached_tokens": 0}
    assert "delta" not in str(output)
    [request] = llm_server.requests
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}


async def test_messages_and_tools_go_out_and_tool_calls_come_back(llm_server: LLMServer) -> None:
    call = ToolCall("call_1", "lookup_order", {"order_id": "A-7"})
    llm_server.script(Reply(tool_calls=(call,)), Reply(tool_calls=(call,)))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup_order",
                "description": "Find",
                "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
            },
        }
    ]
    messages = [{"role": "user", "content": "Where is A-7?"}]
    for stream in (False, True):
        output = await chat(llm_server, {"messages": messages, "tools": tools, "stream": stream})
        assert output["tool_calls"] == [
            {"id": "call_1", "name": "lookup_order", "arguments": {"order_id": "A-7"}}
        ]
        assert output["finish_reason"] == "tool_calls" and output["text"] == ""
    assert [r.body["tools"] for r in llm_server.requests] == [tools, tools]
    assert llm_server.requests[0].messages == messages


async def test_json_output_is_validated_and_repaired_once(llm_server: LLMServer) -> None:
    schema = {
        "type": "object",
        "required": ["sentiment"],
        "properties": {"sentiment": {"enum": ["positive", "negative"]}},
    }
    llm_server.script(
        Reply('{"sentiment": "meh"}', input_tokens=30, output_tokens=6),
        Reply('```json\n{"sentiment": "negative"}\n```', input_tokens=50, output_tokens=8),
    )
    output = await chat(
        llm_server, {"prompt": "Classify: awful.", "response_format": {"json_schema": schema}}
    )
    assert output["json"] == {"sentiment": "negative"}
    assert output["usage"] == {"input_tokens": 80, "output_tokens": 14, "cached_tokens": 0}
    first, repair = llm_server.requests
    assert first.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }
    assert repair.messages[-2] == {"role": "assistant", "content": '{"sentiment": "meh"}'}
    assert repair.messages[-1]["role"] == "user"
    assert "'meh' is not one of ['positive', 'negative']" in repair.messages[-1]["content"]
    assert repair.header("idempotency-key") == "e1:ask:repair"


async def test_json_still_invalid_after_the_repair_fails_without_retrying(
    llm_server: LLMServer,
) -> None:
    llm_server.script(Reply("not json"), Reply("still not json"))
    with pytest.raises(NodeError) as caught:
        await chat(
            llm_server,
            {"prompt": "x", "response_format": {"json_schema": {"type": "object"}}},
        )
    assert caught.value.non_retryable
    assert "even after one repair" in caught.value.message
    assert caught.value.details == {"text": "still not json"}
    assert len(llm_server.requests) == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_messages_api(llm_server: LLMServer, stream: bool) -> None:
    call = ToolCall("toolu_1", "weather", {"city": "Oslo"})
    llm_server.script(
        Reply(
            "Let me check.", tool_calls=(call,), input_tokens=40, output_tokens=12, cached_tokens=16
        )
    )
    live: list[tuple[str, dict[str, Any]]] = []
    tools = [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    ]
    output = await chat(
        llm_server,
        {
            "credential": "claude",
            "model": "claude-test",
            "system": "Be kind.",
            "messages": [
                {"role": "user", "content": "Weather in Oslo?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "t0",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "t0", "content": "sunny"},
            ],
            "tools": tools,
            "stream": stream,
        },
        live,
    )
    assert output["text"] == "Let me check."
    assert output["tool_calls"] == [
        {"id": "toolu_1", "name": "weather", "arguments": {"city": "Oslo"}}
    ]
    assert output["finish_reason"] == "tool_use"
    # input covers the whole prompt: 40 fresh plus 16 read from the cache
    assert output["usage"] == {"input_tokens": 56, "output_tokens": 12, "cached_tokens": 16}
    assert [d["text"] for _, d in live] == (["Let", " me", " check."] if stream else [])
    [request] = llm_server.requests
    assert request.path == "/v1/messages"
    assert request.header("x-api-key") == "sk-test"
    assert request.header("anthropic-version") == "2023-06-01"
    assert request.body["system"] == "Be kind."
    assert request.body["max_tokens"] == 4096
    assert request.body["tools"] == [
        {"name": "weather", "description": "", "input_schema": {"type": "object"}}
    ]
    assert request.body["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t0", "name": "weather", "input": {"city": "Rome"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t0", "content": "sunny"}],
        },
    ]


async def test_a_price_table_turns_tokens_into_cost(llm_server: LLMServer) -> None:
    llm_server.script(
        Reply(
            "hi",
            input_tokens=1_000,
            output_tokens=200,
            cached_tokens=400,
            model="test-model-2026-01",
        )
    )
    node = LlmChat(prices={"test-model": Price(input=2.0, output=10.0, cached=0.5)})
    output = await chat(llm_server, {"prompt": "hi"}, node=node)
    # 600 fresh * 2 + 400 cached * 0.5 + 200 * 10, per million
    assert output["usage"]["cost"] == pytest.approx(0.0034)


# -- failures --------------------------------------------------------------------------------


async def test_a_refused_key_fails_without_retrying(llm_server: LLMServer) -> None:
    llm_server.script(Status(401, "Incorrect API key provided"))
    with pytest.raises(HttpStatusError) as caught:
        await chat(llm_server, {"prompt": "x"})
    assert caught.value.non_retryable
    assert "refused the credential (401): Incorrect API key provided" in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_a_rate_limit_is_retryable_after_retry_after(
    llm_server: LLMServer, stream: bool
) -> None:
    llm_server.script(Status(429, "slow down", {"Retry-After": "7"}))
    with pytest.raises(HttpStatusError) as caught:
        await chat(llm_server, {"prompt": "x", "stream": stream})
    assert not caught.value.non_retryable
    assert caught.value.retry_after is not None
    assert caught.value.retry_after.total_seconds() == 7
    assert caught.value.details["status"] == 429


async def test_a_slow_answer_times_out_as_a_retryable_error(llm_server: LLMServer) -> None:
    llm_server.script(Slow(30))
    with pytest.raises(NodeError) as caught:
        await chat(llm_server, {"prompt": "x", "timeout": "300ms"})
    assert not caught.value.non_retryable
    assert "timed out after 0.3s" in caught.value.message


@pytest.mark.parametrize("clean", [False, True])
@pytest.mark.parametrize("credential", ["local", "claude"])
async def test_a_stream_cut_midway_is_a_retryable_error(
    llm_server: LLMServer, credential: str, clean: bool
) -> None:
    llm_server.script(Cut(Reply("alpha beta gamma delta"), after=2, clean=clean))
    live: list[tuple[str, dict[str, Any]]] = []
    with pytest.raises(NodeError) as caught:
        await chat(llm_server, {"credential": credential, "prompt": "x"}, live)
    assert not caught.value.non_retryable
    assert "cut midway" in caught.value.message
    assert [d["text"] for _, d in live] == ["alpha", " beta"]


async def test_a_credential_of_another_type_is_refused(llm_server: LLMServer) -> None:
    with pytest.raises(NodeError) as caught:
        await chat(llm_server, {"credential": "hook", "prompt": "x"})
    assert caught.value.non_retryable and "needs llm" in caught.value.message
    assert llm_server.requests == []


# -- through the runner: retries and usage ---------------------------------------------------


async def use_server(app: Conveyor, server: LLMServer) -> None:
    """The workspace's 'local' credential points at the test server."""
    data = {"provider": "openai", "api_key": "sk-test", "base_url": server.base_url}
    await app.set_credential("local", "llm", data)


def ask(**config: Any) -> dict[str, Any]:
    return {
        "id": "ask",
        "type": "llm.chat",
        "config": {"credential": "local", "model": "test-model", "prompt": "hi", **config},
        "retry": {"max_attempts": 3, "initial_interval": "1s"},
    }


async def test_a_rate_limited_step_waits_retry_after_then_succeeds(
    fake_time_app: Conveyor, clock: FakeClock, llm_server: LLMServer
) -> None:
    await use_server(fake_time_app, llm_server)
    llm_server.script(Status(429, "slow down", {"Retry-After": "7"}), Reply("done"))
    finished = await execute(fake_time_app, workflow("limited", ask()), clock=clock)
    assert finished.status == "succeeded"
    assert clock.sleeps == [7.0]
    assert finished.step("ask")["output"]["text"] == "done"
    keys = [r.header("idempotency-key") for r in llm_server.requests]
    assert keys == [f"{finished.id}:ask"] * 2


async def test_a_cut_stream_is_asked_again_and_only_the_final_text_is_stored(
    fake_time_app: Conveyor, clock: FakeClock, llm_server: LLMServer
) -> None:
    await use_server(fake_time_app, llm_server)
    llm_server.script(Cut(Reply("half an answer"), after=1), Reply("a whole answer"))
    finished = await execute(fake_time_app, workflow("cut", ask()), clock=clock)
    assert finished.status == "succeeded"
    failed, succeeded = finished.rows("ask")
    assert "cut midway" in failed["error"]["message"]
    assert succeeded["output"]["text"] == "a whole answer"
    assert "half" not in str(succeeded["output"])
    assert len(llm_server.requests) == 2


async def test_token_usage_rolls_up_into_the_execution_workflow_and_user(
    conveyor: Conveyor, llm_server: LLMServer
) -> None:
    await use_server(conveyor, llm_server)
    llm_server.script(
        Reply("one", input_tokens=100, output_tokens=20),
        Reply("two", input_tokens=50, output_tokens=5, cached_tokens=40),
    )
    now = datetime.now(UTC)
    ada = await conveyor.store.write(accounts.create_user, "ada@example.com", "pw" * 8, now)
    definition = workflow(
        "tokens",
        ask(),
        {
            **ask(prompt="{{ nodes.ask.output.text }}", stream=False),
            "id": "again",
            "needs": ["ask"],
        },
    )
    await conveyor.apply(definition)
    user = ExecutionUser(id=ada, email="ada@example.com")
    enqueued = await conveyor.execute("tokens", {}, user=user)
    worker = Worker(conveyor.store, conveyor.registry, SystemClock())
    assert await worker.run_one(enqueued.execution_id) is not None
    execution = await conveyor.store.get_execution(conveyor.workspace_id, enqueued.execution_id)
    assert execution["status"] == "succeeded"
    assert execution["usage_tokens"] == 175 and execution["usage_api_calls"] == 2
    steps = {s["node_id"]: s for s in execution["steps"]}
    assert steps["again"]["output"]["usage"] == {
        "input_tokens": 50,
        "output_tokens": 5,
        "cached_tokens": 40,
    }
    assert llm_server.requests[1].messages[-1]["content"] == "one"
    people = await conveyor.store.read(statistics.user_stats, conveyor.workspace_id)
    [mine] = [p for p in people if p["user_id"] == ada]
    assert (mine["tokens"], mine["api_calls"]) == (175, 2)
    f = ExecutionFilter(conveyor.workspace_id)
    dialect = conveyor.store.db.dialect
    [per_workflow] = await conveyor.store.read(statistics.workflow_range_stats, dialect, f)
    assert per_workflow["tokens"] == 175
