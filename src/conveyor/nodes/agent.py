"""The ``llm.agent`` node type: a tool-calling loop over one chat endpoint whose tools are
workflows (run as child executions) or HTTP requests, bounded by turns and tokens.

Durability: a workflow tool call is a child execution started with the idempotency key
``<execution id>:<node id>:turn<N>:<i>``. When the step runs again after a crash, the turns
whose tool calls all started children are rebuilt from those children (the model is not
asked again, the children are not started again, and their results are reused); the loop
goes on from the first turn that left no child behind."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.durations import Duration
from conveyor.errors import NodeError, NotFound
from conveyor.nodes import llm_wire as wire
from conveyor.nodes.base import ChildRef, NodeContext, NodeType
from conveyor.nodes.llm import Conversation, Message, endpoint_for
from conveyor.nodes.llm_prices import PriceTable

_TURN_KEY = re.compile(r":turn(\d+):(\d+)$")


class HttpTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)


class AgentTool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="the name the model calls")
    description: str = Field(default="", description="what the tool does, for the model")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the tool's arguments",
        json_schema_extra={"x-template": False},
    )
    workflow: str | None = Field(
        default=None, description="run this workflow with the arguments as its input"
    )
    http: HttpTool | None = Field(
        default=None,
        description="send the arguments to this URL (JSON body; the query string for GET)",
    )
    code: str | None = Field(
        default=None,
        description="a Python snippet defining main(input), run like a code node's (in the "
        "sandbox, with its default limits) with the arguments as its input",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> AgentTool:
        kinds = [k for k in (self.workflow, self.http, self.code) if k is not None]
        if len(kinds) != 1:
            raise ValueError(f"tool '{self.name}': give one of 'workflow', 'http' or 'code'")
        if self.code is not None and ("{{" in self.code or "{%" in self.code):
            raise ValueError(
                f"tool '{self.name}': code must not hold template syntax ({{{{, {{%): data "
                "reaches it through the arguments"
            )
        return self

    def schema_for_model(self) -> dict[str, Any]:
        function = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }
        return {"type": "function", "function": function}


class LlmAgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: str = Field(min_length=1, description="name of an 'llm' credential")
    model: str = Field(min_length=1)
    system: str | None = None
    prompt: str | None = Field(default=None, description="the task; or give 'messages'")
    messages: list[Message] | None = None
    tools: list[AgentTool] = Field(min_length=1)
    max_turns: int = Field(default=10, ge=1, le=100, description="model answers at most")
    token_budget: int | None = Field(
        default=None, gt=0, description="fail once the turns used more tokens than this"
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0, description="per model answer")
    stream: bool = True
    timeout: Duration = Field(default=timedelta(seconds=120), description="per model request")
    tool_timeout: Duration = Field(
        default=timedelta(minutes=10), description="longest wait for one tool call"
    )

    @model_validator(mode="after")
    def _check(self) -> LlmAgentConfig:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give either 'messages' or 'prompt'")
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError("tool names must be unique")
        return self


class LlmAgent(NodeType):
    name = "llm.agent"
    title = "LLM agent"
    category = "ai"
    icon = "sparkles"
    description = (
        "Let a language model call tools (workflows, HTTP requests) in a loop until it "
        "answers, within a number of turns and a token budget."
    )
    config_model = LlmAgentConfig
    example = {
        "id": "support",
        "type": "llm.agent",
        "config": {
            "credential": "openai",
            "model": "gpt-4o-mini",
            "prompt": "Where is order {{ input.order_id }}?",
            "tools": [
                {
                    "name": "lookup_order",
                    "description": "Find an order by id",
                    "parameters": {
                        "type": "object",
                        "properties": {"order_id": {"type": "string"}},
                        "required": ["order_id"],
                    },
                    "workflow": "lookup-order",
                }
            ],
            "max_turns": 5,
            "token_budget": 20000,
        },
    }

    def __init__(self, *, prices: PriceTable | None = None) -> None:
        self.prices = prices or {}

    async def run(self, ctx: NodeContext, config: LlmAgentConfig) -> dict[str, Any]:
        endpoint = await endpoint_for(ctx, config.credential)
        loop = AgentLoop(ctx, config, Conversation(ctx, endpoint, config.timeout, self.prices))
        return await loop.run()


class AgentLoop:
    def __init__(self, ctx: NodeContext, config: LlmAgentConfig, talk: Conversation) -> None:
        self.ctx = ctx
        self.config = config
        self.talk = talk
        self.tools = {t.name: t for t in config.tools}
        self.by_workflow = {t.workflow: t.name for t in config.tools if t.workflow}
        self.messages = _conversation(config)
        self.calls: list[dict[str, Any]] = []
        self.saved: dict[str, Any] = {}

    async def run(self) -> dict[str, Any]:
        # What earlier attempts finished: each turn's answer and each tool call's result are
        # step checkpoints; a turn's workflow calls are also found as its children.
        self.saved = await self.ctx.checkpoints()
        earlier = _turns(await self.ctx.services.children(self.ctx.execution_id, self.ctx.node_id))
        for turn in range(1, self.config.max_turns + 1):
            kept = self.saved.get(f"turn{turn}:answer")
            if kept is not None:
                answer = wire.ChatAnswer(
                    text=kept.get("text", ""),
                    tool_calls=list(kept.get("tool_calls", [])),
                    finish_reason=kept.get("finish_reason"),
                )
                self.ctx.log.info(f"turn {turn}: the model's answer from an earlier attempt")
            elif turn in earlier:
                calls = [self._rebuilt(turn, i, child) for i, child in earlier[turn]]
                self.ctx.log.info(f"turn {turn}: rebuilt from {len(calls)} earlier tool calls")
                answer = wire.ChatAnswer(tool_calls=calls, finish_reason="tool_calls")
            else:
                answer = await self.talk.ask(self._request(), f":turn{turn}")
                self._check_budget()
                if answer.tool_calls:
                    kept = {
                        "text": answer.text,
                        "tool_calls": answer.tool_calls,
                        "finish_reason": answer.finish_reason,
                    }
                    await self.ctx.save_checkpoint(f"turn{turn}:answer", kept)
            if not answer.tool_calls:
                return self._output(answer, turn)
            self.messages.append(wire.assistant_message(answer))
            results = await asyncio.gather(
                *(self._call(turn, i, call) for i, call in enumerate(answer.tool_calls))
            )
            for call, result in zip(answer.tool_calls, results, strict=True):
                self.messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)}
                )
        raise NodeError(
            f"the agent used its {self.config.max_turns} turns without a final answer",
            non_retryable=True,
            details={"tool_calls": self.calls},
        )

    def _request(self) -> wire.ChatRequest:
        return wire.ChatRequest(
            model=self.config.model,
            messages=list(self.messages),
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            tools=[t.schema_for_model() for t in self.config.tools],
            stream=self.config.stream,
        )

    def _check_budget(self) -> None:
        used = self.talk.usage["input_tokens"] + self.talk.usage["output_tokens"]
        budget = self.config.token_budget
        if budget is not None and used > budget:
            raise NodeError(
                f"the agent used {used} tokens, over its token_budget of {budget}",
                non_retryable=True,
                details={"tool_calls": self.calls, "usage": self.talk.usage_output()},
            )

    def _rebuilt(self, turn: int, index: int, child: ChildRef) -> dict[str, Any]:
        name = self.by_workflow.get(child.workflow, child.workflow)
        return {"id": f"turn{turn}_{index}", "name": name, "arguments": child.input}

    async def _call(self, turn: int, index: int, call: dict[str, Any]) -> Any:
        tool = self.tools.get(call["name"])
        record = {"turn": turn, "name": call["name"], "arguments": call["arguments"]}
        self.calls.append(record)
        if tool is None:
            record["error"] = f"there is no tool named {call['name']!r}"
            return {"error": record["error"]}
        saved = f"turn{turn}:{index}"
        if saved in self.saved:
            record.update(self.saved[saved])
            return self.saved[saved].get("result", {"error": record.get("error")})
        key = f"{self.ctx.idempotency_key}:turn{turn}:{index}"
        try:
            if tool.workflow is not None:
                result = await self._workflow(tool.workflow, call["arguments"], key)
            elif tool.code is not None:
                result = await self._code(tool.code, call["arguments"], f"turn{turn}:{index}")
            else:
                assert tool.http is not None
                result = await _http(self.ctx, tool.http, call["arguments"], key, self.config)
        except ToolFailed as exc:
            record["error"] = str(exc)
            await self.ctx.save_checkpoint(saved, {"error": str(exc)})
            return {"error": str(exc)}
        record["result"] = result
        await self.ctx.save_checkpoint(saved, {"result": result})
        return result

    async def _workflow(self, workflow: str, arguments: Any, key: str) -> Any:
        services = self.ctx.services
        try:
            child = await services.start_child(
                self.ctx.execution_id, self.ctx.node_id, workflow, arguments, key
            )
        except NotFound as exc:
            raise NodeError(f"tool workflow: {exc}", non_retryable=True) from exc
        self.ctx.log.info(f"tool call {key.rsplit(':', 2)[-2:]}: child execution {child}")
        outcome = await _wait_for(self.ctx, child, self.config.tool_timeout)
        if outcome["status"] != "succeeded":
            message = (outcome.get("error") or {}).get("message", "")
            raise ToolFailed(f"workflow {workflow} ended {outcome['status']}: {message}")
        return outcome["result"]

    async def _code(self, code: str, arguments: Any, where: str) -> Any:
        """Run a code tool through the registry's ``code`` node type (its sandbox)."""
        found = self.ctx.node_types("code") if self.ctx.node_types is not None else None
        if found is None:
            raise NodeError("code tools need the 'code' node type", non_retryable=True)
        config = found.config_model.model_validate({"code": code, "input": arguments})
        tool_ctx = replace(self.ctx, node_id=f"{self.ctx.node_id}:{where}")
        try:
            return await found.run(tool_ctx, config)
        except NodeError as exc:
            if "refused on this worker" in str(exc):
                raise  # no sandbox here: the step fails, the model cannot fix that
            raise ToolFailed(str(exc)) from None

    def _output(self, answer: wire.ChatAnswer, turn: int) -> dict[str, Any]:
        return {
            "text": answer.text,
            "turns": turn,
            "tool_calls": self.calls,
            "model": self.talk.model,
            "usage": self.talk.usage_output(),
            "finish_reason": answer.finish_reason,
        }


class ToolFailed(Exception):
    """A tool call failed; the model is told, and decides what to do next."""


def _conversation(config: LlmAgentConfig) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if config.system:
        found.append({"role": "system", "content": config.system})
    if config.prompt is not None:
        found.append({"role": "user", "content": config.prompt})
    found.extend(m.model_dump(exclude_none=True) for m in config.messages or [])
    return found


def _turns(children: list[ChildRef]) -> dict[int, list[tuple[int, ChildRef]]]:
    """Earlier tool calls by turn, in call order, from the children's keys."""
    found: dict[int, list[tuple[int, ChildRef]]] = {}
    for child in children:
        match = _TURN_KEY.search(child.key)
        if match:
            found.setdefault(int(match[1]), []).append((int(match[2]), child))
    return {turn: sorted(calls, key=lambda c: c[0]) for turn, calls in found.items()}


async def _wait_for(ctx: NodeContext, child: str, limit: timedelta) -> dict[str, Any]:
    """The child's outcome, polled with a growing interval (50 ms to 1 s)."""
    interval = 0.05
    try:
        async with asyncio.timeout(limit.total_seconds()):
            while True:
                outcome = await ctx.services.child_outcome(child)
                if outcome is not None:
                    return outcome
                await asyncio.sleep(interval)
                interval = min(interval * 2, 1.0)
    except TimeoutError:
        raise ToolFailed(
            f"child execution {child} did not finish within {limit.total_seconds():g}s"
        ) from None


async def _http(
    ctx: NodeContext, tool: HttpTool, arguments: Any, key: str, config: LlmAgentConfig
) -> Any:
    import httpx

    from conveyor.nodes.outbound import make_client

    headers = {"Idempotency-Key": key, **tool.headers}
    query = arguments if tool.method == "GET" and isinstance(arguments, dict) else None
    body = None if tool.method == "GET" else arguments
    seconds = config.tool_timeout.total_seconds()
    try:
        async with make_client(policy=ctx.network, timeout=seconds) as client:
            response = await client.request(
                tool.method, tool.url, headers=headers, params=query, json=body
            )
    except httpx.HTTPError as exc:
        raise ToolFailed(f"{tool.method} {tool.url} failed: {exc!r}") from exc
    ctx.report_usage(api_calls=1)
    try:
        answer: Any = response.json()
    except ValueError:
        answer = response.text
    if response.status_code >= 400:
        raise ToolFailed(f"{tool.method} {tool.url} answered {response.status_code}: {answer}")
    return answer
