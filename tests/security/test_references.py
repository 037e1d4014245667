"""Another workspace's objects named where the path does not carry them: in a query string
(filters by workflow, trigger, user, assignee; the executions page's rows by id) or in a
body (a bulk action's ids and filter). The caller acts in their own workspace and must
neither see nor touch B's objects. The query parameters are taken from the OpenAPI
document, so a new filter naming an object is covered."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.support import SSEStream, WebSocket
from tests.security.routes import ENDPOINTS, QUERIES, Endpoint, fill
from tests.security.world import Side, World, unchanged

pytestmark = pytest.mark.asyncio(loop_scope="session")


def references(b: Side) -> dict[str, str]:
    """Query parameters naming an object, and B's object for each."""
    return {
        "workflow": b.values["workflow"],
        "trigger_id": b.values["schedule_id"],
        "user": b.owner.user_id,
        "assignee": b.member.email,
        "id": b.values["execution_id"],  # the executions page's rows by id
    }


def query_names(endpoint: Endpoint) -> list[str]:
    return QUERIES.get(endpoint.key, [])


KNOWN = {"workflow", "trigger_id", "user", "assignee", "id"}
FILTERED = [e for e in ENDPOINTS if e.method == "GET" and KNOWN & set(query_names(e))]


def told(b: Side, text: str, sent: object) -> list[str]:
    """B's ids in ``text`` that the request itself did not carry (a 404 may echo those)."""
    keys = ("execution_id", "workflow", "workflow_name", "notification_id", "task_id")
    return [b.values[k] for k in keys if b.values[k] in text and b.values[k] not in str(sent)]


@pytest.mark.parametrize("endpoint", FILTERED, ids=str)
async def test_a_filter_naming_another_workspaces_object_finds_nothing(
    world: World, endpoint: Endpoint
) -> None:
    a, b = world.a, world.b
    url = fill(endpoint, a.values)
    headers = a.owner.bearer if endpoint.kind == "api" else a.owner.cookie
    for name in KNOWN & set(query_names(endpoint)):
        value = references(b)[name]
        response = await world.call(headers, "GET", url + f"?{name}={value}")
        assert response.status_code in (200, 404), (name, response.text)
        assert not told(b, response.text, value), (name, response.text)


async def test_the_filters_are_known() -> None:
    """A query parameter whose name says it names an object must be in ``references``."""
    for endpoint in ENDPOINTS:
        for name in query_names(endpoint):
            if name.endswith("_id") or name in ("workflow", "user", "assignee"):
                assert name in KNOWN, f"{endpoint} ?{name}: add it to references()"


@pytest.mark.parametrize(
    "body",
    [
        {"action": "cancel", "ids": ["execution_id"]},
        {"action": "replay", "ids": ["execution_id"], "from_node": "t"},
        {"action": "cancel", "filter": {"workflow": "workflow"}},
        {"action": "cancel", "filter": {"trigger_id": "schedule_id"}},
    ],
    ids=["cancel-ids", "replay-ids", "cancel-workflow", "cancel-trigger"],
)
async def test_a_bulk_action_never_reaches_another_workspace(
    world: World, body: dict[str, Any]
) -> None:
    a, b = world.a, world.b
    filled: dict[str, Any] = dict(body)
    if "ids" in body:
        filled["ids"] = [b.values[i] for i in body["ids"]]
    if "filter" in body:
        filled["filter"] = {k: b.values[v] for k, v in body["filter"].items()}
    bulk = next(e for e in ENDPOINTS if e.path.endswith("/executions/bulk"))
    async with unchanged(world, bulk, audited=True):
        response = await world.call(a.owner.bearer, "POST", fill(bulk, a.values), json=filled)
        assert response.status_code in (200, 404), response.text
        if response.status_code == 200:
            assert response.json()["touched"] == 0, response.text
            assert response.json()["eligible"] == 0, response.text
        assert not told(b, response.text, filled), response.text


async def test_the_executions_page_rows_by_id_skip_another_workspaces(world: World) -> None:
    a, b = world.a, world.b
    mine, theirs = a.values["execution_id"], b.values["execution_id"]
    url = f"/w/{a.name}/executions/rows?id={theirs}&id={mine}"
    response = await world.call(a.owner.cookie, "GET", url)
    assert response.status_code == 200, response.text
    assert mine in response.text and theirs not in response.text


async def test_a_websocket_cannot_subscribe_to_another_workspaces_execution(
    world: World,
) -> None:
    a, b = world.a, world.b
    socket_endpoint = next(e for e in ENDPOINTS if e.kind == "socket")
    theirs = b.values["execution_id"]
    async with WebSocket(world.app, fill(socket_endpoint, a.values), a.owner.bearer) as socket:
        await socket.send_json({"subscribe": theirs})
        answer = await socket.receive_json()
    assert answer["subscribe"] == theirs and "not found" in answer["error"], answer


async def test_the_workspace_stream_replays_only_its_own_events(world: World) -> None:
    """Caught up from the first event: every seeded event of A (its last is the task),
    none of B's, though B's were written in between."""
    a, b = world.a, world.b
    stream = next(
        e for e in ENDPOINTS if e.path.endswith("/stream") and "execution_id" not in e.params
    )
    async with world.client(a.owner.bearer) as client:
        url = fill(stream, a.values)
        async with SSEStream(client, url, {"Last-Event-ID": "0"}) as events:
            seen = ""
            while a.values["task_id"] not in seen:
                event = await events.next(within=10)
                assert event is not None
                seen += json.dumps(event.data)
    assert a.values["execution_id"] in seen
    assert not told(b, seen, ""), seen
