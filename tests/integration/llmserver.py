"""A real local LLM server for tests: OpenAI-compatible ``/v1/chat/completions`` and
Anthropic-style ``/v1/messages``, each streamed (SSE) or not, answering from a script.

Script answers with :meth:`LLMServer.script` (first in, first out); when the script is empty
the server answers ``Reply(text=default_text)``. Each answer is one of:

- :class:`Reply`: text and/or tool calls, with usage. Streamed, the text arrives in
  ``chunks`` (default: word by word); OpenAI streams end with a usage chunk when the request
  asks ``stream_options.include_usage``, then ``data: [DONE]``.
- :class:`Status`: an error answer (401, 429 with ``Retry-After``, 500...).
- :class:`Slow`: waits ``seconds`` (cut short when the server stops), then answers ``then``.
- :class:`Cut`: starts a streamed reply, sends ``after`` text chunks, then drops the
  connection midway (no terminating chunk, no ``[DONE]``; with ``clean``, an orderly close
  without chunked encoding, so only the end marker is missing).

Every request is recorded (:attr:`LLMServer.requests`, the parsed JSON body and headers).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    input_tokens: int = 10
    output_tokens: int = 5
    cached_tokens: int = 0
    model: str | None = None  # default: the model the request asked for
    chunks: tuple[str, ...] | None = None  # streamed pieces of ``text``

    def pieces(self) -> list[str]:
        if self.chunks is not None:
            assert "".join(self.chunks) == self.text, "chunks must add up to the text"
            return list(self.chunks)
        words = self.text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)] if self.text else []


@dataclass(frozen=True)
class Status:
    status: int
    message: str = "error"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Slow:
    seconds: float
    then: Reply = field(default_factory=Reply)


@dataclass(frozen=True)
class Cut:
    """``clean``: the connection closes in good order (no chunked encoding, so the client
    sees a plain end of stream), only the end marker is missing."""

    reply: Reply
    after: int = 1
    clean: bool = False


Answer = Reply | Status | Slow | Cut


@dataclass(frozen=True)
class LLMRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))


class LLMServer:
    """The server, its base URL (``.../v1``), its script and what it has seen; thread-safe."""

    def __init__(self, default_text: str = "ok") -> None:
        self.default_text = default_text
        self._lock = threading.Lock()
        self._script: deque[Answer] = deque()
        self._requests: list[LLMRequest] = []
        self.responder: Callable[[LLMRequest], Answer] | None = None
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.root_url = f"http://{host!s}:{port}"
        self.base_url = f"{self.root_url}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="test-llm-server", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self._script.extend(answers)

    @property
    def requests(self) -> list[LLMRequest]:
        with self._lock:
            return list(self._requests)

    def next_answer(self, request: LLMRequest) -> Answer:
        with self._lock:
            self._requests.append(request)
            if self._script:
                return self._script.popleft()
        if self.responder is not None:
            return self.responder(request)
        return Reply(text=self.default_text)


# -- wire formats ------------------------------------------------------------------------------


def openai_message(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in reply.tool_calls
        ]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
        "usage": openai_usage(reply),
    }


def openai_usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
    }


def _finish(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def openai_events(reply: Reply, model: str, include_usage: bool) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [choice],
        }

    yield chunk({"role": "assistant", "content": ""})
    for piece in reply.pieces():
        yield chunk({"content": piece})
    for i, c in enumerate(reply.tool_calls):
        head = {
            "index": i,
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": ""},
        }
        yield chunk({"tool_calls": [head]})
        yield chunk(
            {"tool_calls": [{"index": i, "function": {"arguments": json.dumps(c.arguments)}}]}
        )
    yield chunk({}, _finish(reply))
    if include_usage:
        yield {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [],
            "usage": openai_usage(reply),
        }


def anthropic_message(reply: Reply, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    content.extend(
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
        for c in reply.tool_calls
    )
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
        },
    }


def anthropic_events(reply: Reply, model: str) -> Iterator[dict[str, Any]]:
    start = anthropic_message(replace_text(reply), model)
    start["content"] = []
    start["usage"] = {
        "input_tokens": reply.input_tokens,
        "output_tokens": 1,
        "cache_read_input_tokens": reply.cached_tokens,
    }
    start["stop_reason"] = None
    yield {"type": "message_start", "message": start}
    index = 0
    if reply.text:
        yield {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        for piece in reply.pieces():
            yield {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
        yield {"type": "content_block_stop", "index": 0}
        index = 1
    for c in reply.tool_calls:
        yield {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "tool_use", "id": c.id, "name": c.name, "input": {}},
        }
        yield {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "input_json_delta", "partial_json": json.dumps(c.arguments)},
        }
        yield {"type": "content_block_stop", "index": index}
        index += 1
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use" if reply.tool_calls else "end_turn"},
        "usage": {"output_tokens": reply.output_tokens},
    }
    yield {"type": "message_stop"}


def replace_text(reply: Reply) -> Reply:
    return Reply(text="", input_tokens=reply.input_tokens, output_tokens=reply.output_tokens)


# -- the handler ---------------------------------------------------------------------------------


def _handler_for(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"llm": server})


class _Handler(BaseHTTPRequestHandler):
    llm: LLMServer
    _chunked = True
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        path = self.path.split("?")[0]
        if path not in ("/v1/chat/completions", "/v1/messages"):
            self._json(404, {"error": {"message": f"no route {path}"}})
            return
        request = LLMRequest(path, dict(self.headers.items()), json.loads(raw))
        self._answer(request, self.llm.next_answer(request))

    def _answer(self, request: LLMRequest, answer: Answer) -> None:
        if isinstance(answer, Slow):
            if self.llm.stopping.wait(answer.seconds):
                return
            answer = answer.then
        if isinstance(answer, Status):
            body = {"error": {"type": "test_error", "message": answer.message}}
            self._json(answer.status, body, answer.headers)
            return
        reply, cut_after = (
            (answer.reply, answer.after) if isinstance(answer, Cut) else (answer, None)
        )
        model = reply.model or str(request.body.get("model", "test-model"))
        anthropic = request.path == "/v1/messages"
        if not request.stream and cut_after is None:
            message = anthropic_message(reply, model) if anthropic else openai_message(reply, model)
            self._json(200, message)
            return
        if anthropic:
            events = list(anthropic_events(reply, model))
        else:
            usage = bool((request.body.get("stream_options") or {}).get("include_usage"))
            events = list(openai_events(reply, model, usage))
        self._chunked = not (isinstance(answer, Cut) and answer.clean)
        self._stream(events, anthropic, cut_after)

    def _stream(self, events: list[dict[str, Any]], anthropic: bool, cut_after: int | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        texts = 0
        try:
            for event in events:
                if cut_after is not None and texts >= cut_after:
                    self.close_connection = True
                    self.wfile.flush()
                    return  # dropped midway: no terminating chunk, no [DONE]
                line = f"data: {json.dumps(event)}\n\n"
                if anthropic:
                    line = f"event: {event['type']}\n{line}"
                self._chunk(line.encode())
                texts += _is_text(event)
            if not anthropic:
                self._chunk(b"data: [DONE]\n\n")
            if self._chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            return

    def _chunk(self, data: bytes) -> None:
        if self._chunked:
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n"
        self.wfile.write(data)
        self.wfile.flush()

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            return


def _is_text(event: dict[str, Any]) -> int:
    if event.get("type") == "content_block_delta":
        return 1
    choices = event.get("choices") or [{}]
    return 1 if choices[0].get("delta", {}).get("content") else 0


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    """A started :class:`LLMServer` on 127.0.0.1 (a free port), stopped afterwards."""
    server = LLMServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
