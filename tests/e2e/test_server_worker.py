"""The server's embedded worker runs on an event loop of its own: a node that blocks its
loop (``time.sleep`` in async code) does not stall the API, on both databases."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key

BLOCK_SECONDS = 5.0


@pytest.fixture
def embedded(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        database_url,
        tmp_path / "server.log",
        concurrency=2,
        args=("--plugin", "tests.e2e.nodes"),
    )
    try:
        process.wait_ready(within=30)
        yield process
    finally:
        process.close()


@pytest.mark.timeout(90)
def test_a_blocking_node_does_not_stall_the_api(embedded: ServerProcess) -> None:
    key = api_key(embedded.base_url)
    headers = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=embedded.base_url, headers=headers, timeout=30) as client:
        base = f"{API}/workspaces/{WORKSPACE}"
        definition = {
            "name": "blocking",
            "nodes": [{"id": "hog", "type": "e2e.block", "config": {"seconds": BLOCK_SECONDS}}],
        }
        created = client.post(f"{base}/workflows", json={"definition": definition})
        assert created.status_code == 201, created.text
        started = client.post(f"{base}/workflows/blocking/execute", json={})
        assert started.status_code == 202, started.text
        execution = started.json()["execution_id"]

        deadline = time.monotonic() + 20
        while True:
            detail = client.get(f"{base}/executions/{execution}").json()
            if any(s["status"] == "running" for s in detail.get("steps", [])):
                break
            assert time.monotonic() < deadline, f"the blocking step never started: {detail}"
        blocked_since = time.monotonic()

        timings = []
        while time.monotonic() - blocked_since < BLOCK_SECONDS - 1.5 and len(timings) < 20:
            began = time.monotonic()
            assert client.get("/healthz").status_code == 200
            timings.append(time.monotonic() - began)
        still = client.get(f"{base}/executions/{execution}").json()
        assert still["status"] == "running", "the step ended before the API was measured"

    print(
        f"/healthz while a node blocked its loop: median "
        f"{statistics.median(timings) * 1000:.1f} ms, max {max(timings) * 1000:.1f} ms"
    )
    # Had the worker shared the API's loop, a request would wait out the block (seconds).
    assert max(timings) < 1.0, timings
    assert min(timings) < 0.1, timings
