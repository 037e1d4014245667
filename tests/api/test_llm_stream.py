"""Streamed LLM text on the execution's live stream: each delta arrives as a ``step.delta``
message while the step runs, none is stored, and the step's output is the final text."""

from __future__ import annotations

import threading

from sqlalchemy import select

from conveyor.store.tables import events
from tests.api.conftest import Api
from tests.api.support import SSEStream
from tests.integration.llmserver import LLMRequest, LLMServer, Reply, llm_server

__all__ = ["llm_server"]  # the fixture, for the test below


async def test_llm_deltas_reach_the_stream_live_and_only_the_final_text_is_stored(
    api: Api, llm_server: LLMServer
) -> None:
    connected = threading.Event()

    def answer(request: LLMRequest) -> Reply:
        # Live messages go to those connected: answer once the test's stream is.
        connected.wait(30)
        return Reply("Bonjour tout le monde", chunks=("Bonjour", " tout", " le monde"))

    llm_server.responder = answer
    data = {"provider": "openai", "api_key": "sk-live-test", "base_url": llm_server.base_url}
    await api.conveyor.set_credential("local", "llm", data)
    config = {"credential": "local", "model": "m", "prompt": "Say hello in French"}
    await api.create(
        {"name": "hello", "nodes": [{"id": "ask", "type": "llm.chat", "config": config}]}
    )
    execution_id = await api.execute("hello")
    url = f"{api.ws()}/executions/{execution_id}/stream"
    async with SSEStream(api.http, url) as stream:
        await stream.until(lambda e: e.event == "step")
        connected.set()
        seen = await stream.rest()
    deltas = [e for e in seen if e.event == "step.delta"]
    assert [e.data["text"] for e in deltas] == ["Bonjour", " tout", " le monde"]
    assert all(e.id is None and e.data["node_id"] == "ask" for e in deltas)
    detail = await api.store.get_execution(api.conveyor.workspace_id, execution_id)
    assert detail["status"] == "succeeded"
    [step] = detail["steps"]
    assert step["output"]["text"] == "Bonjour tout le monde"
    stored = await api.store.read(
        lambda conn: [r.type for r in conn.execute(select(events.c.type)).all()]
    )
    assert "step.delta" not in stored
