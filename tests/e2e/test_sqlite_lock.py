"""G12 on SQLite: the write lock held by someone else for longer than the busy timeout, by
another process's ``BEGIN IMMEDIATE`` and then by a Conveyor writer SIGSTOPped inside its
write transaction, with a real ``conveyor server`` (API and embedded worker) on the file.

Write requests wait for the lock, then answer 503 with ``Retry-After`` (problem+json),
never 500 and never a raw "database is locked"; reads keep answering meanwhile (WAL), also
when the waiting writes outnumber the store's threads; once the lock is released
everything works again and the invariant checker finds nothing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.store import Database
from tests.e2e.processes import REPO
from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key
from tests.invariants import check

BUSY = 2.0  # the server's busy timeout (seconds), set by the URL's ``timeout``
# Write requests sent at once while the lock is held: more than the store's threads (4),
# which writes waiting for the lock once took all of, so reads waited as long (regression).
WRITERS = 6
WS = f"{API}/workspaces/{WORKSPACE}"
WORKFLOW = {
    "name": "locked",
    "nodes": [
        {"id": "a", "type": "transform", "config": {"output": 1}},
        {"id": "b", "type": "transform", "needs": ["a"], "config": {"output": 2}},
    ],
}
# Holds the write lock with plain sqlite3 until a line arrives on stdin.
EXTERNAL = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""
# A Conveyor writer (the store's own write transaction) that stops inside it.
CONVEYOR_WRITER = """
import sys
from sqlalchemy import text
from conveyor.store import Database
db = Database(sys.argv[1])
with db.write() as conn:
    conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
    print("holding", flush=True)
    sys.stdin.readline()
"""


@dataclass
class Answer:
    status: int
    seconds: float
    retry_after: str | None
    content_type: str
    body: str


def call(http: httpx.Client, method: str, url: str, **kwargs: Any) -> Answer:
    started = time.monotonic()
    answer = http.request(method, url, **kwargs)
    return Answer(
        answer.status_code,
        time.monotonic() - started,
        answer.headers.get("retry-after"),
        answer.headers.get("content-type", ""),
        answer.text,
    )


class Holder:
    """A process holding the write lock until released (optionally SIGSTOPped meanwhile)."""

    def __init__(self, script: str, database: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-c", script, database],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        assert line.strip() == "holding", line + self.popen.stdout.read()

    def release(self) -> None:
        self.popen.send_signal(signal.SIGCONT)
        assert self.popen.stdin is not None
        self.popen.stdin.write("go\n")
        self.popen.stdin.flush()
        assert self.popen.wait(timeout=30) == 0

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "conveyor.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.dispose()
    yield path


@pytest.mark.timeout(150)
def test_a_write_lock_held_past_the_busy_timeout_gives_503_and_reads_go_on(
    sqlite_file: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{sqlite_file}?timeout={BUSY:g}"
    server = ServerProcess(url, tmp_path / "server.log", concurrency=2)
    try:
        server.wait_ready(within=60)
        token = api_key(server.base_url)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
            applied = http.post(f"{WS}/workflows", json={"definition": WORKFLOW})
            assert applied.status_code == 201, applied.text
            keys: list[str] = []
            for phase, script in (("external", EXTERNAL), ("stopped", CONVEYOR_WRITER)):
                holder = Holder(script, str(sqlite_file) if phase == "external" else url)
                try:
                    if phase == "stopped":
                        holder.popen.send_signal(signal.SIGSTOP)
                    writes, reads = _while_locked(http, phase)
                    holder.release()
                finally:
                    holder.close()
                print(
                    f"\n{phase}: writes answered {[w.status for w in writes]} after "
                    f"{', '.join(f'{w.seconds:.2f}s' for w in writes)}; {len(reads)} reads, "
                    f"slowest {max(r.seconds for r in reads):.2f}s"
                )
                _refused_politely(writes, server)
                assert reads and {r.status for r in reads} == {200}, reads
                assert max(r.seconds for r in reads) < BUSY, "reads waited for the write lock"
                keys += [f"{phase}-{n}" for n in range(WRITERS)]
            _everything_works_again(http, keys)
    finally:
        server.close()
    db = Database(url)
    try:
        assert check(db) == []
    finally:
        db.dispose()


def _while_locked(http: httpx.Client, phase: str) -> tuple[list[Answer], list[Answer]]:
    """Send WRITERS executes at once and read meanwhile, until every write has answered."""
    writes: list[Answer] = []

    def write(n: int) -> None:
        body = {"input": {"n": n}, "idempotency_key": f"{phase}-{n}"}
        writes.append(call(http, "POST", f"{WS}/workflows/{WORKFLOW['name']}/execute", json=body))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    reads: list[Answer] = []
    while any(t.is_alive() for t in threads):
        reads.append(call(http, "GET", f"{WS}/executions"))
        reads.append(call(http, "GET", f"{WS}/workflows/{WORKFLOW['name']}"))
    for thread in threads:
        thread.join()
    return writes, reads


def _refused_politely(writes: list[Answer], server: ServerProcess) -> None:
    assert [w.status for w in writes] == [503] * WRITERS, (writes, server.log_text())
    for answer in writes:
        assert answer.retry_after is not None and int(answer.retry_after) > 0, answer
        assert answer.content_type.startswith("application/problem+json"), answer
        assert "database is locked" not in answer.body, answer.body
        assert answer.seconds >= BUSY * 0.9, f"answered before the busy timeout: {answer}"
        assert answer.seconds < BUSY + 15, f"waited far past the busy timeout: {answer}"


def _everything_works_again(http: httpx.Client, keys: list[str]) -> None:
    ids = []
    for key in keys:
        body = {"input": {}, "idempotency_key": key}
        answer = http.post(f"{WS}/workflows/{WORKFLOW['name']}/execute", json=body)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["execution_id"])
    deadline = time.monotonic() + 60
    while True:
        statuses = [http.get(f"{WS}/executions/{i}").json()["status"] for i in ids]
        if set(statuses) == {"succeeded"}:
            return
        assert time.monotonic() < deadline, f"not all succeeded after the lock: {statuses}"
        time.sleep(0.1)
