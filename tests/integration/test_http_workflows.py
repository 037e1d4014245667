"""http.request inside workflows on both backends: Retry-After steers the retry delay on
the injected clock, stored credentials reach the server and nothing stored holds them,
pages are concatenated into the stored output, and a redirect outside the registry's
allowlist fails the step without retrying."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import pairwise
from urllib.parse import quote

import pytest

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from tests.integration.httpserver import LocalServer
from tests.integration.test_credentials import leaks
from tests.integration.test_runner import execute, workflow
from tests.support import FakeClock

TOKEN = "tok-8e2b6c4a91f0"


@pytest.fixture
async def clocked(database_url: str, clock: FakeClock) -> AsyncIterator[Conveyor]:
    """Conveyor on the injected FakeClock; local HTTP allowed."""
    app = await Conveyor.open(database_url, build_registry(allow_private_network=True), clock=clock)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
async def allowlisted(database_url: str) -> AsyncIterator[Conveyor]:
    """Conveyor whose outbound allowlist holds 127.0.0.1 only (CONVEYOR_OUTBOUND_ALLOWLIST)."""
    registry = build_registry(outbound_allowlist=["127.0.0.1/32"], entry_points=False)
    app = await Conveyor.open(database_url, registry)
    try:
        yield app
    finally:
        app.close()


@pytest.mark.parametrize(("form", "delay"), [("seconds", 3), ("date", 4)])
async def test_429_is_retried_after_its_retry_after(
    clocked: Conveyor, clock: FakeClock, http_server: LocalServer, form: str, delay: int
) -> None:
    url = f"{http_server.base_url}/status?code=429&retry_after={delay}&form={form}&times=1"
    finished = await execute(
        clocked,
        workflow(
            "throttled",
            {
                "id": "call",
                "type": "http.request",
                "config": {"url": url},
                "retry": {"max_attempts": 3, "initial_interval": "1s"},
            },
        ),
        clock=clock,
    )
    assert finished.status == "succeeded"
    rows = finished.rows("call")
    assert [r["status"] for r in rows] == ["failed", "succeeded"]
    assert rows[0]["error"]["details"]["status"] == 429
    # The backoff alone would wait 1 s; Retry-After asks for more, and gets it.
    assert clock.sleeps == [float(delay)]
    assert [e["delay_seconds"] for e in finished.events_of("step.retrying")] == [float(delay)]
    [gap] = [b["started_at"] - a["started_at"] for a, b in pairwise(rows)]
    assert gap == timedelta(seconds=delay)
    assert rows[1]["output"]["body"]["calls"] == 2
    key = f"{finished.id}:call"
    assert [r.idempotency_key for r in http_server.requests_to("/status")] == [key, key]


async def test_a_stored_credential_reaches_the_server_and_is_stored_nowhere(
    conveyor: Conveyor, http_server: LocalServer
) -> None:
    await conveyor.set_credential("partner", "bearer", {"token": TOKEN})
    finished = await execute(
        conveyor,
        workflow(
            "with-token",
            {
                "id": "call",
                "type": "http.request",
                "config": {"url": f"{http_server.base_url}/echo", "credential": "partner"},
            },
        ),
    )
    assert finished.status == "succeeded"
    [request] = http_server.requests_to("/echo")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    # The echoed header is in the output, scrubbed.
    assert finished.step("call")["output"]["body"]["headers"]["Authorization"] == "Bearer ***"
    assert leaks(conveyor, TOKEN) == []


async def test_pages_are_concatenated_into_the_stored_output(
    conveyor: Conveyor, http_server: LocalServer
) -> None:
    finished = await execute(
        conveyor,
        workflow(
            "paged",
            {
                "id": "list",
                "type": "http.request",
                "config": {
                    "url": f"{http_server.base_url}/paged?pages=3&style=link",
                    "paginate": {"next": "link"},
                },
            },
            {
                "id": "count",
                "type": "transform",
                "needs": "list",
                "config": {"output": "{{ nodes.list.output['items'] | length }}"},
            },
        ),
    )
    assert finished.status == "succeeded"
    output = finished.step("list")["output"]
    assert (output["items"], output["pages"], output["more"]) == (
        [100, 101, 200, 201, 300, 301],
        3,
        False,
    )
    assert finished.step("count")["output"] == 6
    assert finished.execution["usage_api_calls"] == 3


async def test_a_redirect_outside_the_allowlist_fails_the_step_without_retrying(
    allowlisted: Conveyor, http_server: LocalServer
) -> None:
    internal = LocalServer("127.0.0.2")
    internal.start()
    try:
        target = quote(f"{internal.base_url}/echo", safe="")
        finished = await execute(
            allowlisted,
            workflow(
                "escape",
                {
                    "id": "call",
                    "type": "http.request",
                    "config": {"url": f"{http_server.base_url}/redirect?to={target}"},
                    "retry": {"max_attempts": 4, "initial_interval": "10ms"},
                },
            ),
        )
    finally:
        internal.stop()
    assert finished.status == "failed"
    [row] = finished.rows("call")
    assert row["error"]["type"] == "BlockedAddress"
    assert row["error"]["non_retryable"] is True
    assert "not in the outbound allowlist" in row["error"]["message"]
    assert finished.events_of("step.retrying") == []
    assert len(http_server.requests_to("/redirect")) == 1
    assert internal.requests == []
