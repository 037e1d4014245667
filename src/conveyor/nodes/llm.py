"""The ``llm.chat`` node type: one chat completion against an OpenAI-compatible endpoint or
Anthropic's API, streamed live, optionally validated against a JSON Schema (with one
repair)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.durations import Duration
from conveyor.errors import NodeError
from conveyor.nodes import llm_wire as wire
from conveyor.nodes.base import NodeContext, NodeType
from conveyor.nodes.llm_client import Endpoint, complete
from conveyor.nodes.llm_prices import PriceTable, cost, price_of

DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
}


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: Any = Field(default=None, description="the message text (or content parts)")
    tool_calls: list[dict[str, Any]] | None = Field(
        default=None, description="an assistant message's tool calls (OpenAI format)"
    )
    tool_call_id: str | None = Field(default=None, description="a tool message's call id")


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    json_schema: dict[str, Any] = Field(
        description="the answer must be JSON valid against this JSON Schema; it is parsed "
        "into the output's 'json', and an invalid answer is sent back once for repair",
        json_schema_extra={"x-template": False},
    )


class LlmChatConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: str = Field(
        min_length=1,
        description="name of an 'llm' credential: provider (openai or anthropic), api_key, "
        "base_url (any OpenAI-compatible endpoint)",
    )
    model: str = Field(min_length=1, description="the model to ask, e.g. gpt-4o-mini")
    messages: list[Message] | None = Field(
        default=None, description="the conversation; give either this or 'prompt'"
    )
    prompt: str | None = Field(default=None, description="a single user message")
    system: str | None = Field(default=None, description="a system message put first")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0, description="most tokens to generate")
    tools: list[dict[str, Any]] = Field(
        default_factory=list,
        description="tools the model may call (OpenAI function schema: {type: function, "
        "function: {name, description, parameters}}); calls come back in 'tool_calls'",
    )
    response_format: ResponseFormat | None = None
    stream: bool = Field(
        default=True, description="stream the answer (deltas shown live; output is the final text)"
    )
    timeout: Duration = Field(
        default=timedelta(seconds=120),
        description="longest wait to connect, for the answer, or for the next streamed bytes",
    )

    @model_validator(mode="after")
    def _one_source(self) -> LlmChatConfig:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give either 'messages' or 'prompt'")
        return self

    def conversation(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        if self.system:
            found.append({"role": "system", "content": self.system})
        if self.prompt is not None:
            found.append({"role": "user", "content": self.prompt})
        for m in self.messages or []:
            found.append(m.model_dump(exclude_none=True))
        return found


class Conversation:
    """Calls to one endpoint for one step: deltas shown live, usage summed and reported."""

    def __init__(
        self, ctx: NodeContext, endpoint: Endpoint, timeout: timedelta, prices: PriceTable
    ) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.timeout = timeout
        self.prices = prices
        self.calls = 0
        self.model = ""
        self.usage = {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0}
        self.cost: float | None = None

    async def ask(self, request: wire.ChatRequest, key_suffix: str = "") -> wire.ChatAnswer:
        self.calls += 1
        answer = await complete(
            self.endpoint,
            request,
            network=self.ctx.network,
            patience=self.timeout,
            idempotency_key=self.ctx.idempotency_key + key_suffix,
            on_delta=lambda text: self.ctx.emit("step.delta", {"text": text}),
        )
        self.model = answer.model or request.model
        for name, value in answer.usage.items():
            self.usage[name] += value
        self.ctx.report_usage(tokens=answer.input_tokens + answer.output_tokens, api_calls=1)
        price = price_of(self.prices, self.model, request.model)
        if price is not None:
            spent = cost(price, answer.input_tokens, answer.output_tokens, answer.cached_tokens)
            self.cost = round((self.cost or 0.0) + spent, 8)
        self.ctx.log.info(
            f"{self.model}: {answer.input_tokens} input ({answer.cached_tokens} cached), "
            f"{answer.output_tokens} output tokens, finish {answer.finish_reason}"
        )
        return answer

    def usage_output(self) -> dict[str, Any]:
        found: dict[str, Any] = dict(self.usage)
        if self.cost is not None:
            found["cost"] = self.cost
        return found


async def endpoint_for(ctx: NodeContext, credential: str) -> Endpoint:
    found = await ctx.credential(credential, "llm")
    provider = str(found.data.get("provider") or "openai")
    if provider not in DEFAULT_BASE_URLS:
        raise NodeError(
            f"credential '{credential}': provider must be openai or anthropic, not {provider!r}",
            non_retryable=True,
        )
    base_url = str(found.data.get("base_url") or DEFAULT_BASE_URLS[provider])
    api_key = str(found.data.get("api_key") or "")
    return Endpoint("anthropic" if provider == "anthropic" else "openai", base_url, api_key)


class LlmChat(NodeType):
    name = "llm.chat"
    title = "LLM chat"
    category = "ai"
    icon = "sparkles"
    description = (
        "Ask a language model (any OpenAI-compatible endpoint, or Anthropic); optionally "
        "get JSON validated against a schema."
    )
    config_model = LlmChatConfig
    example = {
        "id": "summarize",
        "type": "llm.chat",
        "config": {
            "credential": "openai",
            "model": "gpt-4o-mini",
            "system": "You summarize support tickets in one sentence.",
            "prompt": "{{ input.ticket }}",
            "max_tokens": 200,
        },
    }

    def __init__(self, *, prices: PriceTable | None = None) -> None:
        self.prices = prices or {}

    async def run(self, ctx: NodeContext, config: LlmChatConfig) -> dict[str, Any]:
        endpoint = await endpoint_for(ctx, config.credential)
        talk = Conversation(ctx, endpoint, config.timeout, self.prices)
        schema = config.response_format.json_schema if config.response_format else None
        request = wire.ChatRequest(
            model=config.model,
            messages=config.conversation(),
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            tools=config.tools,
            json_schema=schema,
            stream=config.stream,
        )
        answer = await talk.ask(request)
        output: dict[str, Any] = {}
        if schema is not None and not answer.tool_calls:
            answer, output["json"] = await _validated(talk, request, answer, schema)
        return {
            "text": answer.text,
            **output,
            "tool_calls": answer.tool_calls,
            "model": talk.model,
            "usage": talk.usage_output(),
            "finish_reason": answer.finish_reason,
        }


async def _validated(
    talk: Conversation, request: wire.ChatRequest, answer: wire.ChatAnswer, schema: dict[str, Any]
) -> tuple[wire.ChatAnswer, Any]:
    """The answer's JSON; an invalid one goes back to the model once with the problem."""
    value, problem = check_json(answer.text, schema)
    if problem is None:
        return answer, value
    talk.ctx.log.warning(f"the answer is not valid JSON for the schema ({problem}); asking again")
    request.messages = [
        *request.messages,
        wire.assistant_message(answer),
        {"role": "user", "content": repair_prompt(problem)},
    ]
    repaired = await talk.ask(request, ":repair")
    value, problem = check_json(repaired.text, schema)
    if problem is None:
        return repaired, value
    raise NodeError(
        f"the model's answer is not valid JSON for response_format.json_schema, even after "
        f"one repair: {problem}",
        non_retryable=True,
        details={"text": repaired.text[:2000]},
    )


def repair_prompt(problem: str) -> str:
    return (
        f"Your answer is not valid: {problem}. Answer again with only the corrected JSON "
        "value, valid against the schema, with no other text."
    )


def check_json(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """(value, None) when ``text`` is JSON valid against ``schema``; (None, why) otherwise.
    A fenced code block (```json ... ```) around the JSON is accepted."""
    from jsonschema import Draft202012Validator

    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0].strip()
    try:
        value = json.loads(body)
    except ValueError as exc:
        return None, f"it does not parse as JSON ({exc})"
    error = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    if error is None:
        return value, None
    where = "/".join(str(p) for p in error.absolute_path) or "(the root)"
    return None, f"at {where}: {error.message}"
