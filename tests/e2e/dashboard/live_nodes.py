"""Node types for the dashboard's live-message and LLM-step tests, loaded by the server with
``--plugin tests.e2e.dashboard.live_nodes``.

``e2e.stream`` reports progress until the test creates ``go_file`` (it does once the page
shows the step running, so the page's stream is connected), then streams its text, and
holds its step open until the test creates ``release_file``: the test decides when the step
moves on; nothing waits on a guess.
``e2e.llm`` answers with the output shape of the LLM node types, without any provider."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext, node

HOLD_LIMIT_SECONDS = 90


class StreamConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    total: int = 10
    done: int = 3
    message: str = "working"
    chunks: list[str] = []
    go_file: str
    release_file: str


@node("e2e.stream", config=StreamConfig)
async def stream(ctx: NodeContext, config: StreamConfig) -> dict[str, Any]:
    """Report ``done`` of ``total``; stream ``chunks`` after ``go_file``; end after
    ``release_file``."""
    go, release = Path(config.go_file), Path(config.release_file)
    deadline = time.monotonic() + HOLD_LIMIT_SECONDS
    sent = False
    while not await asyncio.to_thread(release.exists):
        # Sent again until released: live messages reach only the streams connected when
        # they are sent, and the page connects when it likes.
        ctx.report_progress(config.done, config.total, f"{config.message} {config.done}")
        if not sent and await asyncio.to_thread(go.exists):
            for chunk in config.chunks:
                ctx.emit("step.delta", {"text": chunk})
            sent = True
        if time.monotonic() > deadline:
            raise NodeError("never released", non_retryable=True)
        await asyncio.sleep(0.2)
    return {"text": "".join(config.chunks), "items": config.total}


stream.example = {
    "id": "crawl",
    "type": "e2e.stream",
    "config": {"total": 10, "go_file": "/tmp/go", "release_file": "/tmp/release"},
}


class LlmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    system: str = ""
    messages: list[dict[str, Any]] = []
    answer: str
    turns: list[Any] = []


@node("e2e.llm", config=LlmConfig)
async def llm(ctx: NodeContext, config: LlmConfig) -> dict[str, Any]:
    """The output an ``llm.chat`` / ``llm.agent`` step has."""
    output: dict[str, Any] = {
        "text": config.answer,
        "json": None,
        "tool_calls": [],
        "model": "e2e-model-1",
        "usage": {"input_tokens": 321, "output_tokens": 54, "cached_tokens": 7},
        "finish_reason": "stop",
    }
    if config.turns:
        output["transcript"] = config.turns
    return output
