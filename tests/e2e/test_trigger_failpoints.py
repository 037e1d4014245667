"""A real ``conveyor server`` dies between committing a trigger and answering it (failpoints
``execute.after_commit``, ``webhook.after_commit``, ``schedule.after_fire``), on SQLite and
on PostgreSQL. The client saw no answer and retries with the same idempotency key or
delivery id against the restarted server: one execution, which runs to the end (G1, G10);
the schedule's committed occurrence is not started a second time after the restart.
The invariant checker (tests/invariants.py) then judges the whole database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.store import Database
from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key
from tests.invariants import check

WS = f"{API}/workspaces/{WORKSPACE}"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
WORKFLOW = {
    "name": "triggered",
    "nodes": [{"id": "echo", "type": "transform", "config": {"output": "{{ input }}"}}],
    "triggers": [
        {
            "type": "webhook",
            "id": "in",
            "auth": {"mode": "none"},
            "dedupe": {"header": "X-Delivery"},
        }
    ],
}


class Servers:
    """Servers started one after another on one database; all stopped at the end."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.database_url = database_url
        self.folder = folder
        self.started: list[ServerProcess] = []

    def start(self, failpoint: str = "") -> ServerProcess:
        env = {"CONVEYOR_TEST_FAILPOINTS": failpoint} if failpoint else {}
        process = ServerProcess(
            self.database_url,
            self.folder / f"server-{len(self.started)}.log",
            concurrency=2,
            env=env,
        )
        self.started.append(process)
        process.wait_ready(within=30)
        return process

    def close(self) -> None:
        for process in self.started:
            process.close()


@pytest.fixture
def servers(database_url: str, tmp_path: Path) -> Iterator[Servers]:
    pool = Servers(database_url, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def until(check_: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while not (value := check_()):
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.1)
    return value


def died(server: ServerProcess) -> None:
    code = server.popen.wait(timeout=30)
    assert code == 137, f"the failpoint did not end the server ({code}):\n{server.log_text()}"


def executions(client: httpx.Client) -> list[dict[str, Any]]:
    listed = client.get(f"{WS}/executions", params={"limit": 500})
    assert listed.status_code == 200, listed.text
    return list(listed.json()["items"])


def all_ended(client: httpx.Client, count: int) -> bool:
    items = executions(client)
    return len(items) >= count and all(e["status"] in TERMINAL for e in items)


def settled_and_checked(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert check(db) == []
    finally:
        db.dispose()


@pytest.mark.timeout(120)
def test_an_execute_committed_but_never_answered_is_retried_into_one_execution(
    servers: Servers,
) -> None:
    first = servers.start("execute.after_commit=exit")
    auth = {"authorization": f"Bearer {api_key(first.base_url)}"}
    body = {"input": {"n": 1}, "idempotency_key": "order-1"}
    with httpx.Client(base_url=first.base_url, headers=auth, timeout=30) as client:
        assert client.post(f"{WS}/workflows", json={"definition": WORKFLOW}).status_code == 201
        with pytest.raises(httpx.TransportError):
            client.post(f"{WS}/workflows/triggered/execute", json=body)
    died(first)
    second = servers.start()
    with httpx.Client(base_url=second.base_url, headers=auth, timeout=30) as client:
        again = client.post(f"{WS}/workflows/triggered/execute", json=body)
        assert again.status_code in (200, 202), again.text
        until(lambda: all_ended(client, 1), 30, "the execution ends")
        items = executions(client)
    assert [(e["id"], e["status"]) for e in items] == [(again.json()["execution_id"], "succeeded")]
    settled_and_checked(servers.database_url)


@pytest.mark.timeout(120)
def test_a_webhook_delivery_committed_but_never_answered_is_redelivered_into_one_execution(
    servers: Servers,
) -> None:
    first = servers.start("webhook.after_commit=exit")
    auth = {"authorization": f"Bearer {api_key(first.base_url)}"}
    with httpx.Client(base_url=first.base_url, headers=auth, timeout=30) as client:
        created = client.post(f"{WS}/workflows", json={"definition": WORKFLOW})
        assert created.status_code == 201, created.text
        assert client.post(f"{WS}/workflows/triggered/activate").status_code == 200
        path = httpx.URL(created.json()["triggers"][0]["url"]).path
        with pytest.raises(httpx.TransportError):
            client.post(path, json={"n": 1}, headers={"X-Delivery": "d-1"})
    died(first)
    second = servers.start()
    with httpx.Client(base_url=second.base_url, headers=auth, timeout=30) as client:
        again = client.post(path, json={"n": 1}, headers={"X-Delivery": "d-1"})
        assert again.status_code == 200, again.text  # the duplicate answer
        until(lambda: all_ended(client, 1), 30, "the execution ends")
        items = executions(client)
    assert [(e["id"], e["status"]) for e in items] == [(again.json()["execution_id"], "succeeded")]
    settled_and_checked(servers.database_url)


@pytest.mark.timeout(120)
def test_a_scheduler_dying_after_an_occurrence_commits_never_starts_it_twice(
    servers: Servers,
) -> None:
    first = servers.start("schedule.after_fire=exit")
    auth = {"authorization": f"Bearer {api_key(first.base_url)}"}
    with httpx.Client(base_url=first.base_url, headers=auth, timeout=30) as client:
        assert client.post(f"{WS}/workflows", json={"definition": WORKFLOW}).status_code == 201
        created = client.post(
            f"{WS}/workflows/triggered/schedules",
            json={"id": "often", "cron": "*/1 * * * * *", "overlap": "allow"},
        )
        assert created.status_code == 201, created.text
        fires_url = f"{WS}/schedules/{created.json()['id']}/fires"
    died(first)
    second = servers.start()
    with httpx.Client(base_url=second.base_url, headers=auth, timeout=30) as client:
        fires = until(
            lambda: [
                f
                for f in client.get(fires_url, params={"status": "started"}).json()
                if f.get("execution_id")
            ][2:],
            45,
            "three occurrences start after the restart",
        )
        assert fires
        assert client.post(f"{WS}/schedules/{created.json()['id']}/disable").status_code == 200
        started = client.get(fires_url, params={"status": "started"}).json()
        until(lambda: all_ended(client, len(started)), 30, "their executions end")
    nominal = [f["nominal_at"] for f in started]
    assert len(nominal) == len(set(nominal)), nominal
    settled_and_checked(servers.database_url)
