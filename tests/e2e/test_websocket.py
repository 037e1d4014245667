"""The WebSocket end to end, installed as the README says (``pip install -e .``): the
``conveyor`` program that install put beside this Python runs ``conveyor server`` (with its
embedded worker), and a real WebSocket client (``websockets``) subscribes to an execution
and reads its events to the end. Callers without access are refused with an HTTP answer
before the handshake, and the server logs no half-done handshake.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key

WORKFLOW = {
    "name": "ws-e2e",
    "nodes": [
        {"id": "first", "type": "transform", "config": {"output": {"n": 1}}},
        {
            "id": "second",
            "type": "transform",
            "needs": ["first"],
            "config": {"output": {"n": "{{ nodes.first.output.n + 1 }}"}},
        },
    ],
}
# What uvicorn logs when it cannot serve WebSockets, or when the app left a handshake open.
BAD_LOG_LINES = ("No supported WebSocket library", "without completing handshake")


def installed_program() -> list[str]:
    """The ``conveyor`` console script of this environment (what ``pip install`` made)."""
    script = Path(sys.executable).with_name("conveyor")
    assert script.exists(), f"{script} missing: install the project with pip install -e ."
    return [str(script)]


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        database_url, tmp_path / "server.log", concurrency=2, program=installed_program()
    )
    try:
        process.wait_ready(within=30)
        yield process
    finally:
        process.close()


def ws_url(server: ServerProcess, workspace: str = WORKSPACE, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}{API}/workspaces/{workspace}/ws{query}"


def receive(socket: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(socket.recv(timeout=10))
    return message


def test_the_package_depends_on_a_websocket_library() -> None:
    requirements = metadata.requires("conveyor") or []
    assert any(r.split(">")[0].split("=")[0].strip() == "websockets" for r in requirements), (
        requirements
    )


@pytest.mark.timeout(90)
def test_a_websocket_client_follows_an_execution_on_a_real_server(server: ServerProcess) -> None:
    key = api_key(server.base_url)
    headers = {"Authorization": f"Bearer {key}"}
    ws = f"{API}/workspaces/{WORKSPACE}"
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
        applied = client.post(f"{ws}/workflows", json={"definition": WORKFLOW})
        assert applied.status_code == 201, applied.text
        accepted = client.post(f"{ws}/workflows/{WORKFLOW['name']}/execute", json={"input": {}})
        assert accepted.status_code == 202, accepted.text
        execution_id = accepted.json()["execution_id"]

        # a header, as programs send it; and ?api_key=, as browsers must
        for url, extra in (
            (ws_url(server), headers),
            (ws_url(server, query=f"?api_key={key}"), {}),
        ):
            with connect(url, additional_headers=extra, open_timeout=10) as socket:
                socket.send(json.dumps({"subscribe": execution_id}))
                assert receive(socket) == {"subscribed": execution_id}
                got = [receive(socket)]
                while got[-1]["type"] != "execution.succeeded":
                    got.append(receive(socket))
            assert {m["execution_id"] for m in got} == {execution_id}
            stored = client.get(f"{ws}/executions/{execution_id}/events").json()
            assert [(m["seq"], m["type"]) for m in got] == [(e["seq"], e["type"]) for e in stored]
            steps = [m["data"]["node_id"] for m in got if m["type"] == "step.succeeded"]
            assert steps == ["first", "second"]
    log = server.log_text()
    assert not [line for line in BAD_LOG_LINES if line in log], log


@pytest.mark.timeout(60)
def test_a_websocket_without_access_is_refused_before_the_handshake(
    server: ServerProcess,
) -> None:
    """Closed before the handshake (1008), which the server answers as HTTP 403."""
    key = api_key(server.base_url)
    refusals = [
        (ws_url(server), {}),  # no credentials
        (ws_url(server), {"Authorization": "Bearer cvk_not-a-key"}),
        (ws_url(server, "nowhere"), {"Authorization": f"Bearer {key}"}),  # no such workspace
    ]
    for url, headers in refusals:
        with pytest.raises(InvalidStatus) as refused, connect(url, additional_headers=headers):
            pass
        assert refused.value.response.status_code == 403, (url, headers, refused.value.response)
    assert server.alive
    log = server.log_text()
    assert log.count('" 403') >= len(refusals), log
    assert not [line for line in BAD_LOG_LINES if line in log], log
