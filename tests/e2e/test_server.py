"""The server end to end on PostgreSQL: a real ``conveyor server --concurrency 0`` process
(no embedded worker) and a separate ``conveyor worker`` process on one database, driven over
HTTP. An execution's Server-Sent Events are read with a real client, the connection is
dropped midway, and a reconnect with ``Last-Event-ID`` must deliver every remaining event
exactly once, in order, up to ``complete``, promptly (the worker's commits reach the server
through PostgreSQL NOTIFY).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.e2e.processes import PROFILE, REPO, Workers

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "e2e-admin-password"
WORKSPACE = "default"
API = "/api/v1"
# From POST .../execute to the SSE ``complete``: the workflow itself takes about a second
# (its wait), so this only fails when an event reaches the stream late (for instance when
# the server misses the worker's NOTIFY and falls back to its 15 s wait).
COMPLETE_WITHIN = 10.0
WAIT_NODE = "pause"

WORKFLOW = {
    "name": "sse-resume",
    "nodes": [
        {"id": "t1", "type": "transform", "config": {"output": {"n": 1}}},
        {
            "id": "t2",
            "type": "transform",
            "needs": ["t1"],
            "config": {"output": {"n": "{{ nodes.t1.output.n + 1 }}"}},
        },
        {"id": WAIT_NODE, "type": "wait", "needs": ["t2"], "config": {"duration": "1s"}},
        {
            "id": "t3",
            "type": "transform",
            "needs": [WAIT_NODE],
            "config": {"output": {"n": "{{ nodes.t2.output.n + 1 }}"}},
        },
        {
            "id": "t4",
            "type": "transform",
            "needs": ["t3"],
            "config": {"output": {"n": "{{ nodes.t3.output.n + 1 }}"}},
        },
        {
            "id": "t5",
            "type": "transform",
            "needs": ["t4"],
            "config": {"output": {"n": "{{ nodes.t4.output.n + 1 }}", "who": "{{ input.who }}"}},
        },
    ],
}

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
]


# -- the server process ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``conveyor server`` on a free port (by default ``--concurrency 0``: no embedded
    worker); its output goes to a log file. ``program`` is how to start ``conveyor``."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        concurrency: int = 0,
        program: list[str] | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url  # what a test seeds rows into
        self.port = free_port()
        self.database_url = database_url
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.terminated = False
        environment = dict(os.environ)
        environment.update(PROFILE)
        environment.update(
            {
                "CONVEYOR_DATABASE_URL": database_url,
                "CONVEYOR_ADMIN_EMAIL": ADMIN_EMAIL,
                "CONVEYOR_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(REPO), environment.get("PYTHONPATH", "")) if p
                ),
                **(env or {}),
            }
        )
        program = program or [sys.executable, "-c", "from conveyor.cli.main import main; main()"]
        self.popen = subprocess.Popen(
            [
                *program,
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--concurrency",
                str(concurrency),
                *args,
            ],
            cwd=REPO,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_ready(self, within: float) -> None:
        """Until GET /readyz answers 200 (the lifespan, and so the first admin, is done)."""
        deadline = time.monotonic() + within
        while True:
            if not self.alive:
                raise AssertionError(
                    f"the server exited with {self.popen.returncode}:\n{self.log_text()}"
                )
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the server is not ready within {within:g}s:\n{self.log_text()}"
                )
            time.sleep(0.1)

    def terminate(self, within: float) -> int | None:
        """SIGTERM; the exit code, or None if it is still running after ``within`` s."""
        if self.alive and not self.terminated:
            self.terminated = True
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=within)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit; always reaped."""
        if self.terminate(within=1 if self.terminated else 10) is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._log.close()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, tmp_path / "server.log")
    try:
        process.wait_ready(within=30)
        yield process
    finally:
        process.close()


@pytest.fixture
def worker_pool(database_url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(database_url, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


# -- Server-Sent Events ------------------------------------------------------------------------


@dataclass
class Message:
    event: str
    id: str | None
    data: Any


@dataclass
class Connection:
    """What one SSE connection received."""

    messages: list[Message] = field(default_factory=list)

    def ids(self) -> list[tuple[int, int]]:
        return [position(m.id) for m in self.messages if m.id is not None]

    def events(self) -> list[Message]:
        """The messages that carry a stored event (not ``connected``, which names the resume
        point, nor the ``progress`` snapshots, ``"<seq>.<n>"``)."""
        return [m for m in self.messages if m.event not in ("connected", "progress")]


def position(ident: str) -> tuple[int, int]:
    """A message id, ``"<seq>"`` or ``"<seq>.<n>"``, as comparable numbers."""
    seq, _, index = ident.partition(".")
    return int(seq), int(index or 0)


def read_sse(response: httpx.Response) -> Iterator[Message]:
    """Parse ``text/event-stream`` lines into messages (comments, e.g. pings, skipped)."""
    event, ident, data = "message", None, []
    for line in response.iter_lines():
        if not line:
            if data:
                yield Message(event, ident, json.loads("\n".join(data)))
            event, ident, data = "message", None, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                ident = value


def follow(
    client: httpx.Client,
    url: str,
    *,
    last_event_id: str | None,
    until: Any,
) -> Connection:
    """Read the stream until ``until(message)`` is true or the server ends it."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    received = Connection()
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for message in read_sse(response):
            received.messages.append(message)
            if until(message):
                break  # leaving the block closes the connection
    return received


# -- the test ----------------------------------------------------------------------------------


def api_key(base_url: str) -> str:
    """Log in as the first admin (created from CONVEYOR_ADMIN_*) and create an API key."""
    with httpx.Client(base_url=base_url, timeout=10) as session:
        login = session.post(
            f"{API}/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        assert {"name": WORKSPACE, "role": "owner"}.items() <= login.json()["workspaces"][0].items()
        created = session.post(
            f"{API}/workspaces/{WORKSPACE}/api-keys",
            json={"name": "e2e", "role": "member"},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},
        )
        assert created.status_code == 201, created.text
        return str(created.json()["key"])


@pytest.mark.timeout(120)
def test_sse_resumes_after_a_disconnect_with_every_event_exactly_once(
    backend: str, server: ServerProcess, worker_pool: Workers
) -> None:
    worker = worker_pool.start(concurrency=4)
    key = api_key(server.base_url)
    ws = f"{API}/workspaces/{WORKSPACE}"
    timeout = httpx.Timeout(10.0)  # a stalled stream fails the read instead of hanging
    with httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout
    ) as client:
        applied = client.post(f"{ws}/workflows", json={"definition": WORKFLOW})
        assert applied.status_code == 201, applied.text
        started = time.monotonic()
        accepted = client.post(
            f"{ws}/workflows/{WORKFLOW['name']}/execute", json={"input": {"who": "e2e"}}
        )
        assert accepted.status_code == 202, accepted.text
        execution_id = accepted.json()["execution_id"]
        stream = f"{ws}/executions/{execution_id}/stream"

        # First connection: drop it once the wait step has started (steps before it done,
        # steps after it not yet run).
        first = follow(
            client,
            stream,
            last_event_id=None,
            until=lambda m: m.event == "step" and m.data.get("node_id") == WAIT_NODE,
        )
        assert first.messages[0].event == "connected", first.messages
        assert first.messages[0].data == {"execution_id": execution_id, "resume_after": 0}
        assert first.messages[-1].event == "step", (first.messages, worker.log_text())
        assert "complete" not in [m.event for m in first.messages]
        resume_from = first.messages[-1].id
        assert resume_from is not None

        # Second connection: resume after the last id received and read to ``complete``.
        second = follow(
            client, stream, last_event_id=resume_from, until=lambda m: m.event == "complete"
        )
        elapsed = time.monotonic() - started
        assert second.messages[0].event == "connected", second.messages
        assert second.messages[0].data == {
            "execution_id": execution_id,
            "resume_after": int(resume_from),
        }
        assert second.messages[-1].event == "complete", (second.messages, server.log_text())
        assert second.messages[-1].data["type"] == "execution.succeeded"
        assert elapsed < COMPLETE_WITHIN, f"complete after {elapsed:.1f}s"

        stored = client.get(f"{ws}/executions/{execution_id}/events")
        assert stored.status_code == 200, stored.text
        detail = client.get(f"{ws}/executions/{execution_id}")
        assert detail.status_code == 200, detail.text

    events = stored.json()
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs

    # Every stored event arrived exactly once across the two connections, in order; the
    # ids only ever go up, each message its own.
    received = first.events() + second.events()
    received_seqs = [int(m.id) for m in received if m.id is not None]
    assert len(received_seqs) == len(received), received
    assert received_seqs == seqs, (received_seqs, seqs)
    assert all(a < b for a, b in itertools.pairwise(received_seqs))
    assert [m.data["type"] for m in received] == [e["type"] for e in events]
    assert [m.data["seq"] for m in received] == seqs
    for connection in (first, second):
        ids = connection.ids()
        assert all(a < b for a, b in itertools.pairwise(ids)), ids
    assert second.ids()[0] == position(resume_from)
    assert min(int(m.id) for m in second.events() if m.id) > int(resume_from)
    assert first.events() and second.events()
    # The break fell in the middle: the wait's start in the first part, its end (and the
    # steps after it) in the second.
    assert {m.data.get("node_id") for m in second.events()} >= {WAIT_NODE, "t3", "t4", "t5"}

    body = detail.json()
    assert body["status"] == "succeeded", body
    assert body["result"] == {"t5": {"n": 5, "who": "e2e"}}, body
    assert {s["node_id"]: s["status"] for s in body["steps"]} == {
        n["id"]: "succeeded" for n in WORKFLOW["nodes"]
    }
    assert worker.alive and server.alive


@pytest.mark.timeout(60)
def test_a_server_without_an_embedded_worker_stops_on_sigterm(
    backend: str, server: ServerProcess
) -> None:
    """``--concurrency 0`` (API only) shuts down gracefully and promptly on SIGTERM."""
    assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    code = server.terminate(within=10)
    assert code is not None, f"still running 10s after SIGTERM:\n{server.log_text()}"
    # uvicorn re-raises the signal after a graceful shutdown, so process managers see it.
    assert code in (0, -signal.SIGTERM), server.log_text()
    assert "Application shutdown complete" in server.log_text()
