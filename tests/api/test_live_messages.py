"""Live-only messages from inside a node (ctx.report_progress, ctx.emit): on the execution's
stream while it runs, without an id (never stored, never resumed), scrubbed of secrets,
coalesced; and across processes on PostgreSQL (NOTIFY)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from conveyor.live import Feed, execution
from conveyor.nodes.base import NodeContext, node
from conveyor.store import Database, Store
from conveyor.store.tables import events
from tests.api.conftest import Api
from tests.api.support import SSEStream

SECRET = "live-secret-4b1d9e7a"


class Steps(BaseModel):
    gate: str
    total: int = 3


async def test_progress_and_deltas_reach_the_stream_live_and_are_not_stored(api: Api) -> None:
    @node("test.progressing", config=Steps)
    async def progressing(ctx: NodeContext, config: Steps) -> dict[str, Any]:
        token = (await ctx.credential("api")).data["token"]
        # Live messages go to those connected: wait until the test's stream is.
        await api.gate(f"{config.gate}-start").wait()
        for done in range(1, config.total + 1):
            ctx.report_progress(done, config.total, f"item {done} with {token}")
        ctx.emit("step.delta", {"text": "Hello"})
        await api.gate(config.gate).wait()
        return {"items": config.total}

    api.conveyor.registry.register(progressing)
    await api.conveyor.set_credential("api", "bearer", {"token": SECRET})
    await api.create(
        {
            "name": "progress",
            "nodes": [{"id": "work", "type": "test.progressing", "config": {"gate": "p"}}],
        }
    )
    execution_id = await api.execute("progress")
    url = f"{api.ws()}/executions/{execution_id}/stream"
    async with SSEStream(api.http, url) as stream:
        await stream.until(lambda e: e.event == "step")
        api.gate("p-start").set()
        seen = await stream.until(lambda e: e.event == "step.delta")
        api.gate("p").set()
        await stream.rest()
    progress = [e for e in seen if e.event == "step.progress"]
    # Coalesced: the first goes at once, the last of a known total always goes.
    assert progress[0].data["done"] == 1 and progress[-1].data["done"] == 3
    assert all(e.data["total"] == 3 and e.data["node_id"] == "work" for e in progress)
    assert progress[-1].data["message"] == "item 3 with ***"
    assert all(e.id is None for e in progress)
    delta = next(e for e in seen if e.event == "step.delta")
    assert delta.data == {"node_id": "work", "attempt": 1, "text": "Hello"}
    assert SECRET not in repr(stream.seen)
    stored = await api.store.read(
        lambda conn: [r.type for r in conn.execute(select(events.c.type)).all()]
    )
    assert not [t for t in stored if t in ("step.progress", "step.delta")]


async def test_a_message_from_another_process_reaches_this_feed(
    backend: str, database_url: str
) -> None:
    if backend != "postgres":
        pytest.skip("cross-process live messages travel by PostgreSQL NOTIFY")
    here, there = Store(Database(database_url)), Store(Database(database_url))
    feed = Feed(here)
    await feed.start()
    try:
        async with feed.subscribe(execution("exec-1")) as subscription:
            await asyncio.sleep(0)  # (the listener connects in the background)
            for _ in range(50):
                there.publish_live("exec-1", "step.progress", {"node_id": "n", "done": 1})
                got = await subscription.next(0.2)
                if got:
                    break
            assert got, "no live message arrived through NOTIFY"
            message = got[0].live
            assert message is not None and message.kind == "step.progress"
            assert message.data == {"node_id": "n", "done": 1}
            # This process's own messages are not delivered twice (once in memory only).
            here.publish_live("exec-1", "step.progress", {"node_id": "n", "done": 2})
            mine = await subscription.next(1.0)
            assert mine is not None and len(mine) == 1
            assert await subscription.next(0.5) is None
    finally:
        await feed.stop()
        here.close()
        there.close()
