"""Another workspace's objects are 404, never 403 and never data: a caller of workspace A
naming workspace B (by name or id), or naming B's objects under A, is answered as if they
did not exist, on every route with a workspace in its path (REST API with a key and with a
session, dashboard pages, the WebSocket), and nothing changes."""

from __future__ import annotations

import pytest

from tests.api.support import WebSocket, WebSocketRejected, problem_of
from tests.security.routes import ENDPOINTS, Endpoint, api_body, fill, form
from tests.security.world import Side, World, page_refused, unchanged

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCOPED = [e for e in ENDPOINTS if e.in_workspace]
# Parameters that name no object of a workspace (versions, node ids, the action taken).
PLAIN = {"ws", "version", "a", "b", "node_id", "part", "workflow_action", "task_action", "action"}


def variants(endpoint: Endpoint, a: Side, b: Side) -> dict[str, dict[str, str]]:
    """B's workspace by name and by id; and, for a route naming objects, B's objects
    under A (B's names never exist in A)."""
    found = {"their workspace": b.values, "their workspace by id": {**b.values, "ws": b.id}}
    if set(endpoint.params) - PLAIN:
        found["their objects in mine"] = {**b.values, "ws": a.name}
    if "execution_id" in endpoint.params:  # an execution may be named by a prefix of its id
        prefix = b.values["execution_id"][:31]
        found["their execution's prefix in mine"] = {
            **b.values,
            "ws": a.name,
            "execution_id": prefix,
        }
    return found


def secrets_of(b: Side, url: str) -> list[str]:
    """What of B an answer must not tell (its ids may be echoed where the URL named them)."""
    told = [b.id, b.owner.email, b.member.email, *(b.values[k] for k in OBJECTS)]
    return [v for v in told if v not in url]


OBJECTS = (
    "workflow",
    "workflow_name",
    "execution_id",
    "schedule_id",
    "webhook_id",
    "credential",
    "notification_id",
    "task_id",
    "key_id",
    "user_id",
)


@pytest.mark.parametrize("credential", ["key", "session"])
@pytest.mark.parametrize("endpoint", [e for e in SCOPED if e.kind == "api"], ids=str)
async def test_an_api_route_answers_404_for_another_workspace(
    world: World, endpoint: Endpoint, credential: str
) -> None:
    a, b = world.a, world.b
    if credential == "key":
        headers = a.owner.bearer
    else:
        headers = {**a.owner.cookie, "X-CSRF-Token": a.owner.csrf}
    async with unchanged(world, endpoint):
        for name, values in variants(endpoint, a, b).items():
            url = fill(endpoint, values)
            response = await world.call(
                headers, endpoint.method, url, json=api_body(endpoint, world)
            )
            assert response.status_code == 404, (name, url, response.status_code, response.text)
            problem_of(response, 404)
            leaked = [v for v in secrets_of(b, url) if v in response.text]
            assert not leaked, (name, url, leaked)


@pytest.mark.parametrize("endpoint", [e for e in SCOPED if e.kind == "page"], ids=str)
async def test_a_page_answers_404_for_another_workspace(world: World, endpoint: Endpoint) -> None:
    a, b = world.a, world.b
    async with unchanged(world, endpoint):
        for name, values in variants(endpoint, a, b).items():
            url = fill(endpoint, values)
            data = None
            if endpoint.changes:
                data = {**form(endpoint, world), "csrf_token": a.owner.csrf}
            response = await world.call(a.owner.cookie, endpoint.method, url, data=data)
            assert response.status_code == 404, (name, url, response.status_code)
            page_refused(response, 404)
            leaked = [v for v in secrets_of(b, url) if v in response.text]
            assert not leaked, (name, url, leaked)


@pytest.mark.parametrize("endpoint", [e for e in SCOPED if e.kind == "socket"], ids=str)
async def test_a_websocket_refuses_another_workspace(world: World, endpoint: Endpoint) -> None:
    for headers in (world.a.owner.bearer, world.a.owner.cookie):
        with pytest.raises(WebSocketRejected) as refused:
            async with WebSocket(world.app, fill(endpoint, world.b.values), headers) as socket:
                await socket.send_json({"subscribe": "workspace"})
        assert (refused.value.status, refused.value.reason) == (1008, "not-found")
