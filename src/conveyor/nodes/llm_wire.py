"""The chat wire formats (OpenAI-compatible and Anthropic) as pure data: request bodies from
one neutral request, neutral answers from response bodies and from streamed events.

Neutral messages are OpenAI-style (``system``/``user``/``assistant``/``tool`` roles, an
assistant's ``tool_calls``, a tool message's ``tool_call_id``); neutral tools are OpenAI
function schemas; a neutral tool call is ``{"id", "name", "arguments": {...}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Provider = Literal["openai", "anthropic"]
ANTHROPIC_VERSION = "2023-06-01"
# Anthropic requires max_tokens; OpenAI-compatible servers choose their own when absent.
ANTHROPIC_DEFAULT_MAX_TOKENS = 4096


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    json_schema: dict[str, Any] | None = None
    stream: bool = True


@dataclass
class ChatAnswer:
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    # A stream is complete once its end marker ([DONE], message_stop) or its finish reason
    # arrived; one that stops before both was cut.
    complete: bool = False

    @property
    def usage(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
        }


def path(provider: Provider) -> str:
    return "/messages" if provider == "anthropic" else "/chat/completions"


def headers(provider: Provider, api_key: str, idempotency_key: str) -> dict[str, str]:
    found = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"}
    if provider == "anthropic":
        return found | {"x-api-key": api_key, "anthropic-version": ANTHROPIC_VERSION}
    return found | ({"Authorization": f"Bearer {api_key}"} if api_key else {})


def body(provider: Provider, request: ChatRequest) -> dict[str, Any]:
    return anthropic_body(request) if provider == "anthropic" else openai_body(request)


# -- OpenAI-compatible ---------------------------------------------------------------------------


def openai_body(request: ChatRequest) -> dict[str, Any]:
    found: dict[str, Any] = {"model": request.model, "messages": request.messages}
    if request.temperature is not None:
        found["temperature"] = request.temperature
    if request.max_tokens is not None:
        found["max_tokens"] = request.max_tokens
    if request.tools:
        found["tools"] = request.tools
    if request.json_schema is not None:
        found["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": request.json_schema},
        }
    if request.stream:
        found["stream"] = True
        found["stream_options"] = {"include_usage": True}
    return found


def openai_answer(data: dict[str, Any]) -> ChatAnswer:
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    answer = ChatAnswer(
        text=message.get("content") or "",
        tool_calls=[_openai_call(c) for c in message.get("tool_calls") or []],
        model=str(data.get("model", "")),
        finish_reason=choice.get("finish_reason"),
        complete=True,
    )
    _openai_usage(answer, data.get("usage"))
    return answer


def _openai_call(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "id": str(call.get("id", "")),
        "name": str(function.get("name", "")),
        "arguments": _arguments(function.get("arguments")),
    }


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            return raw
    return raw if raw is not None else {}


def _openai_usage(answer: ChatAnswer, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    answer.input_tokens = int(usage.get("prompt_tokens") or 0)
    answer.output_tokens = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    answer.cached_tokens = int(details.get("cached_tokens") or 0)


class OpenAIStream:
    """Folds ``chat.completion.chunk`` events into one answer; ``feed`` returns new text."""

    def __init__(self) -> None:
        self.answer = ChatAnswer()
        self._calls: dict[int, dict[str, Any]] = {}
        self._done = False

    def finish(self) -> ChatAnswer:
        """The answer once the stream has ended (``complete`` says whether it was whole)."""
        self.answer.complete = self._done or self.answer.finish_reason is not None
        self.answer.tool_calls = [
            {**c, "arguments": _arguments(c["arguments"])} for _, c in sorted(self._calls.items())
        ]
        return self.answer

    def feed(self, data: str) -> str:
        if data.strip() == "[DONE]":
            self._done = True
            return ""
        event = json.loads(data)
        self.answer.model = str(event.get("model") or self.answer.model)
        _openai_usage(self.answer, event.get("usage"))
        text = ""
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                self._call_delta(call)
            if choice.get("finish_reason"):
                self.answer.finish_reason = choice["finish_reason"]
        self.answer.text += text
        return text

    def _call_delta(self, call: dict[str, Any]) -> None:
        slot = self._calls.setdefault(
            int(call.get("index", 0)), {"id": "", "name": "", "arguments": ""}
        )
        function = call.get("function") or {}
        slot["id"] = call.get("id") or slot["id"]
        slot["name"] = function.get("name") or slot["name"]
        slot["arguments"] += function.get("arguments") or ""


# -- Anthropic -----------------------------------------------------------------------------------


def anthropic_body(request: ChatRequest) -> dict[str, Any]:
    system = [m["content"] for m in request.messages if m.get("role") == "system"]
    if request.json_schema is not None:
        system.append(json_instruction(request.json_schema))
    found: dict[str, Any] = {
        "model": request.model,
        "messages": anthropic_messages(request.messages),
        "max_tokens": request.max_tokens or ANTHROPIC_DEFAULT_MAX_TOKENS,
    }
    if system:
        found["system"] = "\n\n".join(str(s) for s in system)
    if request.temperature is not None:
        found["temperature"] = request.temperature
    if request.tools:
        found["tools"] = [anthropic_tool(t) for t in request.tools]
    if request.stream:
        found["stream"] = True
    return found


def json_instruction(schema: dict[str, Any]) -> str:
    return (
        "Answer with one JSON value only, no prose and no code fences, valid against this "
        f"JSON Schema: {json.dumps(schema)}"
    )


def anthropic_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function", tool)
    return {
        "name": function["name"],
        "description": function.get("description", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }


def anthropic_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Neutral messages as Anthropic's: no system role, tool calls as ``tool_use`` blocks and
    tool results as ``tool_result`` blocks in a user message (consecutive ones merged)."""
    found: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "system":
            continue
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id", ""),
                "content": _text(m.get("content")),
            }
            if found and found[-1]["role"] == "user" and isinstance(found[-1]["content"], list):
                found[-1]["content"].append(block)
            else:
                found.append({"role": "user", "content": [block]})
        elif role == "assistant" and m.get("tool_calls"):
            blocks: list[dict[str, Any]] = []
            if m.get("content"):
                blocks.append({"type": "text", "text": _text(m["content"])})
            for call in m["tool_calls"]:
                neutral = _openai_call(call) if "function" in call else call
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": neutral["id"],
                        "name": neutral["name"],
                        "input": neutral["arguments"],
                    }
                )
            found.append({"role": "assistant", "content": blocks})
        else:
            found.append({"role": role, "content": m.get("content")})
    return found


def _text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content)


def anthropic_answer(data: dict[str, Any]) -> ChatAnswer:
    answer = ChatAnswer(model=str(data.get("model", "")), complete=True)
    for block in data.get("content") or []:
        if block.get("type") == "text":
            answer.text += block.get("text", "")
        elif block.get("type") == "tool_use":
            answer.tool_calls.append(
                {
                    "id": block.get("id", ""),
                    "name": block.get("name", ""),
                    "arguments": block.get("input") or {},
                }
            )
    answer.finish_reason = data.get("stop_reason")
    _anthropic_usage(answer, data.get("usage"))
    return answer


def _anthropic_usage(answer: ChatAnswer, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    cached = int(usage.get("cache_read_input_tokens") or 0)
    if "input_tokens" in usage:
        # Anthropic counts cache reads and writes apart from input_tokens; here input
        # covers the whole prompt, as OpenAI's prompt_tokens does.
        written = int(usage.get("cache_creation_input_tokens") or 0)
        answer.input_tokens = int(usage["input_tokens"] or 0) + cached + written
        answer.cached_tokens = cached
    if "output_tokens" in usage:
        answer.output_tokens = int(usage["output_tokens"] or 0)


class AnthropicStream:
    """Folds Anthropic's stream events into one answer; ``feed`` returns new text."""

    def __init__(self) -> None:
        self.answer = ChatAnswer()
        self._blocks: dict[int, dict[str, Any]] = {}
        self._done = False

    def feed(self, data: str) -> str:
        event = json.loads(data)
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.answer.model = str(message.get("model", ""))
            _anthropic_usage(self.answer, message.get("usage"))
        elif kind == "content_block_start":
            self._blocks[int(event.get("index", 0))] = dict(event.get("content_block") or {})
        elif kind == "content_block_delta":
            return self._delta(int(event.get("index", 0)), event.get("delta") or {})
        elif kind == "message_delta":
            self.answer.finish_reason = (event.get("delta") or {}).get("stop_reason")
            _anthropic_usage(self.answer, event.get("usage"))
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            raise ValueError(str((event.get("error") or {}).get("message", event)))
        return ""

    def _delta(self, index: int, delta: dict[str, Any]) -> str:
        block = self._blocks.setdefault(index, {"type": "text", "text": ""})
        if delta.get("type") == "text_delta":
            text = str(delta.get("text", ""))
            block["text"] = block.get("text", "") + text
            self.answer.text += text
            return text
        if delta.get("type") == "input_json_delta":
            block["partial"] = block.get("partial", "") + str(delta.get("partial_json", ""))
        return ""

    def finish(self) -> ChatAnswer:
        """The answer once the stream has ended (``complete`` says whether it was whole)."""
        self.answer.complete = self._done or self.answer.finish_reason is not None
        for _, block in sorted(self._blocks.items()):
            if block.get("type") == "tool_use":
                arguments = (
                    _arguments(block["partial"]) if "partial" in block else block.get("input")
                )
                self.answer.tool_calls.append(
                    {
                        "id": block.get("id", ""),
                        "name": block.get("name", ""),
                        "arguments": arguments or {},
                    }
                )
        return self.answer


def assistant_message(answer: ChatAnswer) -> dict[str, Any]:
    """The answer as a neutral assistant message, for the next turn of a conversation."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for c in answer.tool_calls
        ]
    return message
