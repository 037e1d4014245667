"""The world the security suite attacks: the server's app on a real database with two
workspaces, each holding one of every kind of object and a person of every role, and a
snapshot of every table to prove a refused request changed nothing."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import Connection, select

from conveyor.api.throttles import Throttles, ThrottleSettings
from conveyor.app import Conveyor
from conveyor.live import Feed
from conveyor.nodes.builtin import build_registry
from conveyor.store import accounts, inbox, tables
from conveyor.store.accounts import Role
from conveyor.store.store import Store
from conveyor.store.workflows import workspace_id
from tests.api.support import StreamingTransport, transform
from tests.security.routes import API, Endpoint, build, endpoints

PASSWORD = "correct horse battery"
SESSION = "conveyor_session"
# Written by reads on purpose: a key's last use (at most once a minute).
VOLATILE = frozenset({("api_keys", "last_used_at")})
_people = itertools.count(1)
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class Person:
    user_id: str
    email: str
    password: str
    role: Role
    key: str
    key_id: str
    session: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def cookie(self) -> dict[str, str]:
        """A browser of this person's session, without the CSRF token."""
        return {"Cookie": f"{SESSION}={self.session}"}

    @property
    def csrf(self) -> str:
        return accounts.csrf_token(self.session)


@dataclass
class Side:
    """One workspace: its people and the ids of its objects, by path parameter."""

    name: str
    id: str
    owner: Person
    admin: Person
    member: Person
    viewer: Person
    values: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    store: Store
    app: FastAPI
    transport: StreamingTransport
    a: Side
    b: Side

    def client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, base_url="http://test", headers=headers)

    async def snapshot(self) -> dict[str, list[tuple[str, ...]]]:
        return await self.store.read(_rows)

    async def call(
        self,
        headers: dict[str, str],
        method: str,
        url: str,
        *,
        json: Any = None,
        data: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send and read the answer; a stream is closed as soon as its status arrives."""
        async with self.client(headers) as client:
            request = client.build_request(method, url, json=json, data=data)
            async with asyncio.timeout(10):
                response = await client.send(request, stream=True)
                try:
                    if not response.headers.get("content-type", "").startswith("text/event-stream"):
                        await response.aread()
                finally:
                    await response.aclose()
        return response


def _rows(conn: Connection) -> dict[str, list[tuple[str, ...]]]:
    found = {}
    for table in tables.metadata.sorted_tables:
        kept = [c for c in table.columns if (table.name, c.name) not in VOLATILE]
        rows = conn.execute(select(*kept)).all()
        found[table.name] = sorted(tuple(str(v) for v in row) for row in rows)
    return found


async def person(store: Store, ws: str, role: Role) -> Person:
    now = store.clock.now()
    email = f"person{next(_people)}-{role.value}@example.com"
    user_id = await store.write(accounts.create_user, email, PASSWORD, now)
    await store.write(accounts.set_role, user_id, ws, role, now)
    key, row = await store.write(accounts.create_api_key, ws, user_id, email, role, now)
    session = await store.write(accounts.create_session, user_id, now, timedelta(hours=2))
    return Person(user_id, email, PASSWORD, role, key, row["id"], session)


async def side(world_store: Store, client: httpx.AsyncClient, name: str) -> Side:
    """Workspace ``name`` with a workflow, an execution (queued: no worker runs in this
    suite, so nothing changes behind a test's back), a schedule, a webhook, a credential,
    a notification and a task; every name differs from the other workspace's."""
    store = world_store
    ws = await store.write(workspace_id, name, store.clock.now())
    people = {role: await person(store, ws, role) for role in Role}
    owner = people[Role.OWNER]
    base = f"{API}/workspaces/{name}"
    client.headers.update(owner.bearer)

    async def post(path: str, body: Any, status: int = 201) -> dict[str, Any]:
        response = await client.post(f"{base}{path}", json=body)
        assert response.status_code == status, response.text
        answer: dict[str, Any] = response.json()
        return answer

    workflow = f"wf-{name}"
    made = await post("/workflows", {"definition": transform(workflow)})
    execution = await post(f"/workflows/{workflow}/execute", {"input": {}}, 202)
    schedule = await post(f"/workflows/{workflow}/schedules", {"id": "s", "every": 3600})
    webhook = await post(f"/workflows/{workflow}/webhooks", {"id": "h"})
    credential = f"key-{name}"
    body = {"name": credential, "type": "bearer", "data": {"token": "t" * 12}}
    await post("/credentials", body)
    execution_id = execution["execution_id"]
    inboxed = {}
    for param, make in (
        ("notification_id", inbox.create_notification),
        ("task_id", inbox.create_task),
    ):
        inboxed[param] = await store.write(
            make, store.db.dialect, execution_id, param, {"title": "t"}, store.clock.now()
        )
    values = {
        "ws": name,
        "workflow": made["id"],
        "workflow_name": workflow,
        "workflow_action": "pause",
        "version": "1",
        "a": "1",
        "b": "1",
        "execution_id": execution_id,
        "node_id": "t",
        "part": "output",
        "schedule_id": schedule["id"],
        "webhook_id": webhook["id"],
        "credential": credential,
        "key_id": people[Role.VIEWER].key_id,
        "user_id": people[Role.MEMBER].user_id,
        "task_action": "done",
        "token": "no-such-token",
        "path": "no-such-file.js",
        **inboxed,
    }
    return Side(
        name, ws, owner, people[Role.ADMIN], people[Role.MEMBER], people[Role.VIEWER], values
    )


@asynccontextmanager
async def opened(database_url: str, expected: list[Endpoint]) -> AsyncIterator[World]:
    conveyor = await Conveyor.open(database_url, build_registry(allow_private_network=True))
    app = build(conveyor)
    # Every route is shown bad keys here, over a thousand from one address: the limit on
    # invalid keys is sized to the suite (tests/api/test_throttles.py tests the limit itself;
    # here each route's own answer to a bad key is the point).
    app.state.throttles = Throttles(ThrottleSettings(api_key_failures=100_000))
    # The suite was parametrized from an app built at collection; it must be this one.
    assert endpoints(app) == expected
    feed = Feed(conveyor.store)
    await feed.start()  # what the lifespan does; the ASGI transport does not run it
    app.state.feed = feed
    transport = StreamingTransport(app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # Sixteen people: at the production cost an argon2 hash takes most of a second
            # on a loaded 2-core machine. Cheap hashes still verify (their cost is in them).
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(accounts, "_hasher", lambda: CHEAP_HASHER)
                a = await side(conveyor.store, client, "default")
                b = await side(conveyor.store, client, "other")
        yield World(conveyor.store, app, transport, a, b)
        assert not transport.errors, transport.errors
    finally:
        await feed.stop()
        conveyor.close()


@asynccontextmanager
async def unchanged(
    world: World, endpoint: Endpoint, *, audited: bool = False
) -> AsyncIterator[None]:
    """Every table as it was after the block (checked for routes that may change any).
    ``audited``: the call answers 2xx (having touched nothing), so the audit log records it."""
    if not endpoint.changes:
        yield
        return
    before = await world.snapshot()
    yield
    after = await world.snapshot()
    changed = [
        name
        for name in before
        if before[name] != after[name] and not (audited and name == "audit_log")
    ]
    assert not changed, f"{endpoint} changed the tables {changed} although it was refused"


def page_refused(response: httpx.Response, status: int) -> None:
    """The dashboard's HTML error page with ``status``."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html"), response.headers
