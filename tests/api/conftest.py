"""Fixtures of the API tier: the FastAPI app in-process on the test database (both
backends), a worker running executions meanwhile, and callers with real credentials."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from conveyor.api.app import create_app
from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.live import Feed
from conveyor.nodes.base import NodeContext, node
from conveyor.store import accounts
from conveyor.store.accounts import Role
from conveyor.store.workflows import workspace_id
from conveyor.worker import Worker
from tests.api.support import API, StreamingTransport, Waiter

A = "default"  # the workspace the conveyor fixture is bound to
B = "other"
PASSWORD = "correct horse battery"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
_emails = itertools.count(1)


class GateConfig(BaseModel):
    gate: str


class FlakyConfig(BaseModel):
    key: str


@dataclass
class Caller:
    user_id: str
    email: str
    password: str
    role: Role
    workspace: str
    workspace_id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Api:
    """The app under test, its database, and helpers to act and wait."""

    def __init__(self, conveyor: Conveyor, app: FastAPI) -> None:
        self.conveyor = conveyor
        self.store = conveyor.store
        self.app = app
        self.transport = StreamingTransport(app)
        self.client = httpx.AsyncClient(transport=self.transport, base_url="http://test")
        self.gates: dict[str, asyncio.Event] = {}
        self.calls: Counter[str] = Counter()
        self.waiter = Waiter()
        self._clients: list[httpx.AsyncClient] = [self.client]
        self.owner: Caller
        self.http: httpx.AsyncClient

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def new_client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=self.transport, base_url="http://test", headers=headers
        )
        self._clients.append(client)
        return client

    def as_(self, caller: Caller) -> httpx.AsyncClient:
        return self.new_client(caller.headers)

    async def caller(
        self,
        role: Role,
        workspace: str = A,
        *,
        key_role: Role | None = None,
        is_admin: bool = False,
    ) -> Caller:
        """A new user with ``role`` in ``workspace`` (created if needed) and an API key."""
        store = self.store
        now = store.clock.now()
        ws = await store.write(workspace_id, workspace, now)
        email = f"user{next(_emails)}-{role.value}@example.com"
        user_id = await store.write(accounts.create_user, email, PASSWORD, now, is_admin=is_admin)
        await store.write(accounts.set_role, user_id, ws, role, now)
        key, row = await store.write(
            accounts.create_api_key, ws, user_id, f"{email} key", key_role or role, now
        )
        return Caller(user_id, email, PASSWORD, role, workspace, ws, key, row["id"])

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    # -- waiting -------------------------------------------------------------------------------
    async def event_types(self, execution_id: str) -> list[str]:
        return [e["type"] for e in await self.store.events_after(execution_id)]

    async def until_event(self, execution_id: str, kind: str, within: float = 10) -> None:
        async def seen() -> bool:
            return kind in await self.event_types(execution_id)

        await self.waiter.until(seen, f"event {kind} of execution {execution_id}", within)

    async def until_status(
        self, execution_id: str, *statuses: str, within: float = 10
    ) -> dict[str, Any]:
        async def reached() -> dict[str, Any] | None:
            row = await self.store.execution_row(execution_id)
            return row if row["status"] in statuses else None

        return await self.waiter.until(
            reached, f"execution {execution_id} to be {'/'.join(statuses)}", within
        )

    async def until_finished(self, execution_id: str, within: float = 10) -> dict[str, Any]:
        return await self.until_status(execution_id, *TERMINAL, within=within)

    # -- acting through the API -----------------------------------------------------------------
    def ws(self, workspace: str = A) -> str:
        return f"{API}/workspaces/{workspace}"

    async def create(
        self, definition: dict[str, Any], client: httpx.AsyncClient | None = None
    ) -> dict[str, Any]:
        response = await (client or self.http).post(
            f"{self.ws()}/workflows", json={"definition": definition}
        )
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    async def execute(
        self,
        workflow: str,
        input: Any = None,
        client: httpx.AsyncClient | None = None,
        workspace: str = A,
        **extra: Any,
    ) -> str:
        body = {"input": input if input is not None else {}, **extra}
        response = await (client or self.http).post(
            f"{self.ws(workspace)}/workflows/{workflow}/execute", json=body
        )
        assert response.status_code == 202, response.text
        return str(response.json()["execution_id"])

    async def run(
        self, definition: dict[str, Any], input: Any = None, client: httpx.AsyncClient | None = None
    ) -> dict[str, Any]:
        """Create, execute and wait for the end; the finished execution row."""
        await self.create(definition, client)
        execution_id = await self.execute(definition["name"], input, client)
        return await self.until_finished(execution_id)


@pytest.fixture
async def api(conveyor: Conveyor) -> AsyncIterator[Api]:
    app = create_app(conveyor)
    feed = Feed(conveyor.store)
    await feed.start()  # what the lifespan does; ASGI transports here do not run it
    app.state.feed = feed
    env = Api(conveyor, app)

    @node("test.gate", config=GateConfig)
    async def gate(ctx: NodeContext, config: GateConfig) -> dict[str, Any]:
        await env.gate(config.gate).wait()
        return {"opened": config.gate}

    @node("test.flaky", config=FlakyConfig)
    async def flaky(ctx: NodeContext, config: FlakyConfig) -> dict[str, Any]:
        env.calls[config.key] += 1
        if env.calls[config.key] == 1:
            raise RuntimeError(f"first call of {config.key} fails")
        return {"calls": env.calls[config.key]}

    conveyor.registry.register(gate)
    conveyor.registry.register(flaky)
    conveyor.store.listeners.append(env.waiter.on_events)
    worker = Worker(
        conveyor.store,
        conveyor.registry,
        SystemClock(),
        concurrency=8,
        poll=timedelta(milliseconds=50),
        hold_timers_up_to=timedelta(0),
        shutdown_grace=timedelta(seconds=2),
    )
    app.state.worker = worker
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))
    env.owner = await env.caller(Role.OWNER)
    env.http = env.as_(env.owner)
    try:
        yield env
    finally:
        await env.aclose()
        errors = list(env.transport.errors)
        for event in env.gates.values():
            event.set()
        stop.set()
        await asyncio.wait_for(task, 20)
        await feed.stop()
    # the app failed after it had started answering (the client saw a cut-off response)
    assert not errors, "app errors after the response started: " + "; ".join(
        f"{where}: {type(exc).__name__}: {exc}" for where, exc in errors
    )
