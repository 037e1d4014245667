"""Closing a tab is not an error: a real ``conveyor server`` (embedded worker) streams
events while executions run, clients drop their SSE connections mid-stream, and the
server's log has no traceback (FastAPI's own SSE keep-alive logged ``BrokenResourceError``
for such disconnects; ``api/sse.py`` explains the fix)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key, read_sse

CHAIN = {
    "name": "chain",
    "nodes": [
        {"id": f"n{i}", "type": "transform", "config": {"output": i}}
        | ({"needs": [f"n{i - 1}"]} if i else {})
        for i in range(5)
    ],
}
DISCONNECTS = 21  # each one dropped while messages flow: FastAPI's keep-alive logged most


class Load:
    """Executions submitted one after another until stopped, so streams always have news."""

    def __init__(self, base_url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        self.stop = threading.Event()
        self.submitted: list[str] = []
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        url = f"{API}/workspaces/{WORKSPACE}/workflows/chain/execute"
        while not self.stop.is_set():
            response = self.client.post(url, json={"input": {}})
            if response.status_code != 202:
                self.failures.append(response.text)
                return
            self.submitted.append(response.json()["execution_id"])

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.client.close()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, tmp_path / "server.log", concurrency=4)
    try:
        process.wait_ready(within=30)
        yield process
    finally:
        process.close()


def read_some(
    client: httpx.Client, url: str, count: int, headers: dict[str, str] | None = None
) -> list[str]:
    """Read ``count`` messages, then drop the connection while more are coming."""
    kinds: list[str] = []
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        for message in read_sse(response):
            kinds.append(message.event)
            if len(kinds) == count:
                break
    return kinds


@pytest.mark.timeout(180)
def test_clients_that_disconnect_mid_stream_leave_no_error_in_the_log(
    server: ServerProcess,
) -> None:
    key = api_key(server.base_url)
    ws = f"{API}/workspaces/{WORKSPACE}"
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as client:
        created = client.post(f"{ws}/workflows", json={"definition": CHAIN})
        assert created.status_code == 201, created.text
        with Load(server.base_url, key) as load:
            for i in range(DISCONNECTS):
                if i % 3 == 0 or not load.submitted:  # live events
                    kinds = read_some(client, f"{ws}/stream", 8)
                elif i % 3 == 1:  # the whole history, then live events: many at once
                    kinds = read_some(client, f"{ws}/stream", 8, {"Last-Event-ID": "0"})
                else:  # an execution stream, from its start
                    stream = f"{ws}/executions/{load.submitted[-1]}/stream?after=0"
                    kinds = read_some(client, stream, 3)
                assert kinds[0] == "connected", kinds
            assert not load.failures, load.failures
        assert client.get("/healthz").status_code == 200
    # A graceful stop: every connection's handling has ended before the process exits.
    code = server.terminate(within=20)
    assert code is not None, server.log_text()
    log = server.log_path.read_text(errors="replace")
    assert log.count('GET /api/v1/workspaces/default/stream HTTP/1.1" 200') >= DISCONNECTS // 3 * 2
    for sign in ("Traceback", "Exception in ASGI application", "BrokenResourceError", "ERROR"):
        assert sign not in log, log[-6000:]
