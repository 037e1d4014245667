"""Size limits over HTTP: 413 problem+json naming the limit and its setting, for bodies
announced by Content-Length, streamed bodies, inputs and definitions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from conveyor.api.app import create_app
from conveyor.app import Conveyor
from conveyor.engine.limits import Limits
from tests.api.conftest import Api
from tests.api.support import StreamingTransport, problem_of, transform

LIMITS = Limits(request_bytes=4000, input_bytes=1000, definition_bytes=2000)


@pytest.fixture
async def client(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    """The API with small limits, as the owner."""
    conveyor = api.conveyor
    app = create_app(Conveyor(conveyor.store, conveyor.registry, conveyor.workspace_id, LIMITS))
    app.state.feed = api.app.state.feed
    async with httpx.AsyncClient(
        transport=StreamingTransport(app), base_url="http://test", headers=api.owner.headers
    ) as http:
        yield http


async def test_a_body_over_the_request_limit_is_a_413(api: Api, client: httpx.AsyncClient) -> None:
    url = f"{api.ws()}/workflows/none/execute"
    response = await client.post(url, json={"input": {"blob": "x" * 5000}})
    body = problem_of(response, 413)
    assert body["setting"] == "CONVEYOR_MAX_REQUEST_BYTES" and body["limit"] == 4000
    assert "over the limit of 4000 bytes (CONVEYOR_MAX_REQUEST_BYTES)" in body["detail"]


async def test_a_streamed_body_without_a_length_is_counted(
    api: Api, client: httpx.AsyncClient
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"input": {"blob": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}}'

    response = await client.post(
        f"{api.ws()}/workflows/none/execute",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    body = problem_of(response, 413)
    assert body["setting"] == "CONVEYOR_MAX_REQUEST_BYTES"


async def test_an_input_or_definition_over_its_limit_is_a_413(
    api: Api, client: httpx.AsyncClient
) -> None:
    await api.create(transform("small"))
    response = await client.post(
        f"{api.ws()}/workflows/small/execute", json={"input": {"blob": "x" * 1500}}
    )
    assert problem_of(response, 413)["setting"] == "CONVEYOR_MAX_INPUT_BYTES"
    big = transform("big", output="y" * 2500)
    response = await client.post(f"{api.ws()}/workflows", json={"definition": big})
    assert problem_of(response, 413)["setting"] == "CONVEYOR_MAX_DEFINITION_BYTES"
    ok = await client.post(f"{api.ws()}/workflows/small/execute", json={"input": {"n": 1}})
    assert ok.status_code == 202, ok.text
    assert json.loads(ok.text)["execution_id"]
