"""Query parameters: offset pagination next to cursors, and a 400 naming any query parameter
an endpoint does not take (every /api/v1 endpoint, HTTP and WebSocket)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.api.support import WebSocket, WebSocketRejected, problem_of, transform


async def _page(api: Api, url: str, **params: Any) -> dict[str, Any]:
    response = await api.http.get(url, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _offset_pages(api: Api, url: str, key: str, **params: Any) -> list[list[Any]]:
    """Page with ``offset`` + ``has_more`` the way offset clients do."""
    pages: list[list[Any]] = []
    offset = 0
    while True:
        page = await _page(api, url, limit=2, offset=offset, **params)
        pages.append([item[key] for item in page["items"]])
        if not page["has_more"]:
            return pages
        offset += len(page["items"])
        assert len(pages) < 10, "offset pagination does not end"


async def test_offset_pages_through_executions_like_the_cursor(api: Api) -> None:
    await api.create(transform("offset-many"))
    made = [await api.execute("offset-many", {"i": i}) for i in range(5)]
    for execution_id in made:
        await api.until_finished(execution_id)
    newest_first = list(reversed(made))
    for url, params in (
        (f"{api.ws()}/executions", {"workflow": "offset-many"}),
        (f"{api.ws()}/workflows/offset-many/executions", {}),
    ):
        pages = await _offset_pages(api, url, "id", **params)
        assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]], url
        page = await _page(api, url, offset=1, limit=10, **params)
        assert [i["id"] for i in page["items"]] == newest_first[1:]
        assert page["stats"]["total"] == 5  # stats cover the filter, not the page
        # an offset counts from the cursor when both are given
        first = await _page(api, url, limit=2, **params)
        after = await _page(api, url, limit=2, offset=1, cursor=first["next_cursor"], **params)
        assert [i["id"] for i in after["items"]] == newest_first[3:5]
        beyond = await _page(api, url, offset=5, **params)
        assert beyond["items"] == [] and beyond["has_more"] is False
    problem_of(await api.http.get(f"{api.ws()}/executions", params={"offset": -1}), 422)


async def test_offset_pages_through_workflows(api: Api) -> None:
    names = [f"wf-{i}" for i in range(5)]
    for name in reversed(names):
        await api.create(transform(name))
    pages = await _offset_pages(api, f"{api.ws()}/workflows", "name")
    assert pages == [names[0:2], names[2:4], names[4:5]]


def _fill(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "default" if m[1] == "ws" else "x" * 8, path)


async def test_every_endpoint_refuses_query_parameters_it_does_not_take(api: Api) -> None:
    paths = api.app.openapi()["paths"]
    operations = [
        (path, method, operation)
        for path, item in paths.items()
        if path.startswith("/api/v1/")
        for method, operation in item.items()
    ]
    assert len(operations) > 20, operations
    for path, method, operation in operations:
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        response = await api.http.request(
            method, _fill(path), params={"bogus": "1", "limit": "3", "offsett": "2"}
        )
        body = problem_of(response, 400)
        unknown, _, taken = body["detail"].partition(";")
        assert "bogus" in unknown and "offsett" in unknown, (method, path, body)
        assert ("limit" in unknown) is ("limit" not in declared), (method, path, body)
        assert all(name in taken for name in declared), (method, path, body)
        assert body["type"].endswith("/bad-request"), body


async def test_declared_parameters_still_work_and_errors_name_what_is_taken(api: Api) -> None:
    body = problem_of(
        await api.http.get(f"{api.ws()}/workflows", params={"page": 2, "limit": 1}), 400
    )
    assert body["detail"].startswith("unknown query parameter: page"), body
    assert "cursor, limit, offset" in body["detail"], body
    await _page(api, f"{api.ws()}/workflows", limit=1)


@pytest.mark.parametrize("query", [b"bogus=1", b"api_key=nope&bogus=1"])
async def test_the_websocket_refuses_unknown_query_parameters(api: Api, query: bytes) -> None:
    with pytest.raises(WebSocketRejected) as refused:
        async with WebSocket(api.app, f"{api.ws()}/ws", api.owner.headers, query=query):
            pass
    assert (refused.value.status, refused.value.reason) == (1008, "bad-request")


async def test_the_websocket_takes_its_api_key_from_the_query(api: Api) -> None:
    query = f"api_key={api.owner.key}".encode()
    async with WebSocket(api.app, f"{api.ws()}/ws", query=query) as socket:
        await socket.send_json({"subscribe": "workspace"})
        assert await socket.receive_json() == {"subscribed": "workspace"}
