"""A workspace's own outbound allowlist (its admins set it): it narrows where that
workspace's steps may connect, never widens what the operator allows (both databases)."""

from __future__ import annotations

import asyncio
from typing import Any

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.store import accounts
from conveyor.worker import Worker
from tests.integration.httpserver import LocalServer


async def call(app: Conveyor, url: str) -> dict[str, Any]:
    name = f"call-{len(await app.store.list_workflows(app.workspace_id))}"
    await app.apply(
        {"name": name, "nodes": [{"id": "get", "type": "http.request", "config": {"url": url}}]}
    )
    enqueued = await app.execute(name, {})
    worker = Worker(app.store, app.registry, SystemClock())
    await asyncio.wait_for(worker.run_one(enqueued.execution_id), timeout=30)
    execution = await app.store.get_execution(app.workspace_id, enqueued.execution_id)
    return execution


async def test_the_workspace_list_narrows_where_steps_connect(
    conveyor: Conveyor, http_server: LocalServer
) -> None:
    url = f"{http_server.base_url}/echo"
    assert (await call(conveyor, url))["status"] == "succeeded"

    other = conveyor.scoped(await conveyor.store.workspace("elsewhere"))
    await conveyor.store.write(accounts.set_outbound_allowlist, other.workspace_id, ["example.com"])
    refused = await call(other, url)
    assert refused["status"] == "failed"
    assert "not in this workspace's outbound allowlist" in refused["error"]["message"]
    assert len(http_server.requests_to("/echo")) == 1  # refused before connecting

    # The first workspace has no list: unchanged. A list naming the host lets it through.
    assert (await call(conveyor, url))["status"] == "succeeded"
    await conveyor.store.write(
        accounts.set_outbound_allowlist, other.workspace_id, ["127.0.0.0/8", "example.com"]
    )
    assert (await call(other, url))["status"] == "succeeded"
    assert await conveyor.store.read(accounts.outbound_allowlist, other.workspace_id) == (
        "127.0.0.0/8",
        "example.com",
    )
