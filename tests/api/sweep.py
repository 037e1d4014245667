"""The route sweep the audit tests walk: every API operation from the OpenAPI document,
its path filled with real ids of two seeded workspaces, and a body that it accepts.
(The generated security suite, tests/security/, has its own richer world.)"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from conveyor.store import accounts, inbox
from conveyor.store.accounts import Role
from tests.api.conftest import A, Api, B, Caller
from tests.api.support import API, problem_of, transform, waiting

WS = f"{API}/workspaces/{{ws}}"
# Public by design, with an auth of its own per webhook (signatures, tokens): its refusals
# are tested in tests/e2e/test_webhooks.py; here only that it never asks for API credentials.
HOOK = "/hooks/{token}"
PARAM = re.compile(r"{([^}]+)}")


@dataclass
class World:
    """Real objects in two workspaces: what path parameters are filled with."""

    owner_a: Caller
    owner_b: Caller
    values_a: dict[str, str]
    values_b: dict[str, str]


def bodies(world: World) -> dict[tuple[str, str], Any]:
    """A valid body for every route that takes one (valid, so that a 404 or 403 is not
    masked by a 422, and nothing else could explain the answer)."""
    return {
        ("POST", f"{API}/auth/login"): {"email": world.owner_a.email, "password": "x" * 12},
        ("POST", f"{API}/workspaces"): {"name": "made-by-the-sweep"},
        ("PUT", f"{WS}/members"): {"email": world.owner_a.email, "role": "owner"},
        ("PATCH", WS): {"max_running_per_user": 10},
        ("POST", f"{WS}/api-keys"): {"name": "sweep", "role": "viewer"},
        ("POST", f"{WS}/workflows"): {"definition": transform("made-by-the-sweep")},
        ("PUT", f"{WS}/workflows/{{workflow}}"): {"definition": waiting("wf")},
        ("POST", f"{WS}/workflows/{{workflow}}/execute"): {"input": {}},
        ("POST", f"{WS}/validate"): {"definition": transform("checked-by-the-sweep")},
        ("POST", f"{WS}/generate"): {"description": "a workflow the sweep never drafts"},
        ("POST", f"{WS}/executions/{{execution_id}}/replay"): {"from_node": "before"},
        ("POST", f"{WS}/executions/{{execution_id}}/signal"): {"name": "go"},
        ("POST", f"{WS}/executions/bulk"): {"action": "cancel", "filter": {}, "dry_run": True},
        ("POST", f"{WS}/workflows/{{workflow}}/schedules"): {
            "type": "schedule",
            "id": "sweep",
            "every": 3600,
        },
        ("POST", f"{WS}/schedules/{{schedule_id}}/backfill"): {
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T03:00:00Z",
            "dry_run": True,
        },
        ("POST", f"{WS}/workflows/{{workflow}}/webhooks"): {
            "type": "webhook",
            "id": "sweep",
            "auth": {"mode": "none"},
        },
        ("POST", f"{WS}/webhooks/{{webhook_id}}/secret"): {},
        ("POST", f"{WS}/credentials"): {
            "name": "sweep",
            "type": "bearer",
            "data": {"token": "t" * 12},
        },
        ("PUT", f"{WS}/credentials/{{name}}"): {"data": {"token": "u" * 12}},
    }


def operations(api: Api) -> list[tuple[str, str]]:
    spec = api.app.openapi()
    found = [
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete") and path != HOOK
    ]
    assert len(found) >= 30, found
    return found


def requires_body(api: Api, method: str, path: str) -> bool:
    return "requestBody" in api.app.openapi()["paths"][path][method.lower()]


def fill(path: str, values: dict[str, str]) -> str:
    unknown = [p for p in PARAM.findall(path) if p not in values]
    if unknown:
        pytest.fail(
            f"{path} has path parameters {unknown} this test does not know how to fill: "
            "cover the new route in tests/api/test_auth.py"
        )
    return PARAM.sub(lambda m: values[m.group(1)], path)


def body_for(api: Api, world: World, method: str, path: str) -> Any:
    known = bodies(world)
    if (method, path) in known:
        return known[(method, path)]
    if requires_body(api, method, path):
        pytest.fail(f"{method} {path} takes a body this test has no example for: add one")
    return None


async def call(client: httpx.AsyncClient, method: str, url: str, body: Any) -> httpx.Response:
    """Send and read the answer; a stream is closed right after its status arrives."""
    if body is None:
        request = client.build_request(method, url)
    else:
        request = client.build_request(method, url, json=body)
    async with asyncio.timeout(10):
        response = await client.send(request, stream=True)
        try:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                await response.aread()
        finally:
            await response.aclose()
    return response


def problem_or_none(response: httpx.Response, status: int) -> str | None:
    """None when ``response`` is the problem+json ``status``; else what is wrong."""
    if response.status_code != status:
        return f"{response.status_code} ({response.headers.get('content-type')})"
    try:
        problem_of(response, status)
    except AssertionError as exc:
        return f"{response.status_code} {response.headers.get('content-type')}: {exc}"
    return None


async def session_token(api: Api, caller: Caller) -> str:
    store = api.store
    return await store.write(
        accounts.create_session, caller.user_id, store.clock.now(), timedelta(hours=1)
    )


async def session_headers(api: Api, caller: Caller) -> dict[str, str]:
    """What the dashboard sends: the session cookie and the session's CSRF token."""
    token = await session_token(api, caller)
    return {"Cookie": f"conveyor_session={token}", "X-CSRF-Token": accounts.csrf_token(token)}


async def build_world(api: Api) -> World:
    owner_b = await api.caller(Role.OWNER, B)
    as_b = api.as_(owner_b)
    values = {}
    for who, client, workspace in ((api.owner, api.http, A), (owner_b, as_b, B)):
        created = await client.post(
            f"{api.ws(workspace)}/workflows", json={"definition": waiting("wf")}
        )
        assert created.status_code == 201, created.text
        execution_id = await api.execute("wf", client=client, workspace=workspace)
        await api.until_status(execution_id, "waiting")
        triggers = {}
        for kind, spec in (
            ("schedules", {"type": "schedule", "id": "s", "every": 3600}),
            ("webhooks", {"type": "webhook", "id": "h", "auth": {"mode": "header"}}),
        ):
            made = await client.post(f"{api.ws(workspace)}/workflows/wf/{kind}", json=spec)
            assert made.status_code == 201, made.text
            triggers[kind] = made.json()["id"]
        # Named per workspace: B's credential name must not exist in A.
        credential = f"key-{workspace}"
        made = await client.post(
            f"{api.ws(workspace)}/credentials",
            json={"name": credential, "type": "bearer", "data": {"token": "t" * 12}},
        )
        assert made.status_code == 201, made.text
        values[workspace] = {
            "ws": workspace,
            "workflow": created.json()["id"],  # an id: B's name may exist in A too
            "execution_id": execution_id,
            "key_id": who.key_id,
            "user_id": who.user_id,
            "version": "1",
            "a": "1",  # versions compared
            "b": "1",
            "node_id": "before",  # a step of the waiting execution
            "part": "output",
            "schedule_id": triggers["schedules"],
            "webhook_id": triggers["webhooks"],
            "name": credential,
            **await inbox_items(api, execution_id),
        }
    return World(api.owner, owner_b, values[A], values[B])


async def inbox_items(api: Api, execution_id: str) -> dict[str, str]:
    """A notification and a task made as a step of ``execution_id`` would make them."""
    store = api.store
    made = {}
    for key, make in (
        ("notification_id", inbox.create_notification),
        ("task_id", inbox.create_task),
    ):
        made[key] = await store.write(
            make, store.db.dialect, execution_id, key, {"title": "sweep"}, store.clock.now()
        )
    return made


@pytest.fixture
async def world(api: Api) -> World:
    return await build_world(api)
