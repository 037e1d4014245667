"""Code nodes in workflows on both backends: templates reach ``input`` but never ``code``,
and a worker survives every hostile snippet as a clear step error, then runs other
executions as before."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.worker import Worker
from tests.support import require_bubblewrap

CANARY = "canary-secret-5e1d0b-long-enough-for-a-key-0123456789"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


@pytest.fixture
async def serving(conveyor: Conveyor) -> AsyncIterator[Worker]:
    require_bubblewrap()
    worker = Worker(
        conveyor.store,
        conveyor.registry,
        SystemClock(),
        concurrency=4,
        poll=timedelta(milliseconds=50),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.serve(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def snippet(name: str, code: str, input: Any = None, **config: Any) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            {"id": "snippet", "type": "code", "config": {"code": code, "input": input, **config}}
        ],
    }


async def start(app: Conveyor, definition: dict[str, Any], input: Any = None) -> str:
    await app.apply(definition)
    return (await app.execute(definition["name"], input or {})).execution_id


async def finished(app: Conveyor, execution_id: str, within: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        found = await app.store.get_execution(app.workspace_id, execution_id)
        if found["status"] in TERMINAL:
            return found
        assert time.monotonic() < deadline, f"{execution_id} still {found['status']}"
        await asyncio.sleep(0.1)


def step_error(execution: dict[str, Any]) -> str:
    (step,) = [s for s in execution["steps"] if s["node_id"] == "snippet"]
    return str(step["error"]["message"])


async def test_input_is_rendered_and_code_is_not(conveyor: Conveyor, serving: Worker) -> None:
    # Rendered, '{{ 1 + 1 }}' would become 2.
    code = (
        "def main(input):\n"
        "    return {'doubled': [n * 2 for n in input['numbers']], 'text': '{{ 1 + 1 }}'}\n"
    )
    definition = {
        "name": "templated",
        "nodes": [
            {"id": "numbers", "type": "transform", "config": {"output": [1, 2, 3]}},
            {
                "id": "snippet",
                "type": "code",
                "needs": ["numbers"],
                "config": {"code": code, "input": {"numbers": "{{ nodes.numbers.output }}"}},
            },
        ],
    }
    execution = await finished(conveyor, await start(conveyor, definition))
    assert execution["status"] == "succeeded", execution.get("error")
    (step,) = [s for s in execution["steps"] if s["node_id"] == "snippet"]
    assert step["output"] == {"doubled": [2, 4, 6], "text": "{{ 1 + 1 }}"}


async def test_a_template_reading_data_in_code_is_refused_with_a_hint(conveyor: Conveyor) -> None:
    from conveyor.errors import DefinitionError

    code = "def main(input):\n    return '{{ nodes.order.output }}'\n"
    with pytest.raises(DefinitionError) as caught:
        await conveyor.apply(snippet("hint", code))
    (problem,) = caught.value.problems
    assert problem.path == "config.code"
    assert "never rendered" in problem.message
    assert "data reaches the code through 'input'" in problem.message


LOOP = "def main(input):\n    while True:\n        pass\n"
MEMORY = (
    "def main(input):\n    hoard = []\n    while True:\n        hoard.append(bytearray(10**7))\n"
)
FORKS = "import os\ndef main(input):\n    while True:\n        os.fork()\n"
READ = "def main(input):\n    return open(input, 'rb').read(100).hex()\n"
ENVIRON = (
    "import os\n"
    "def main(input):\n"
    f"    if any('{CANARY}' in value for value in os.environ.values()):\n"
    "        raise SystemExit('the secret is visible')\n"
    "    return sorted(os.environ)\n"
)
CONNECT = (
    "import socket\n"
    "def main(input):\n"
    "    socket.create_connection(('127.0.0.1', input), timeout=5).close()\n"
)


async def test_the_worker_survives_hostile_snippets_and_keeps_working(
    conveyor: Conveyor,
    serving: Worker,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_SECRET_KEY", CANARY)
    database = database_file(database_url, tmp_path)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        await hostile_snippets(conveyor, database, listener)
    finally:
        listener.close()
    after = await start(conveyor, snippet("after", "def main(input):\n    return input + 1\n", 41))
    execution = await finished(conveyor, after)
    assert execution["status"] == "succeeded"
    assert execution["steps"][0]["output"] == 42


def database_file(database_url: str, tmp_path: Path) -> str:
    """The SQLite database's file; for PostgreSQL a stand-in file of the same kind."""
    if database_url.startswith("sqlite:///"):
        database = database_url.removeprefix("sqlite:///")
    else:
        database = str(tmp_path / "stand-in.db")
        Path(database).write_bytes(b"SQLite format 3\x00")
    assert Path(database).exists()
    return database


async def hostile_snippets(conveyor: Conveyor, database: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    hostile = {
        "loop": (snippet("loop", LOOP, cpu_seconds=1, timeout="60s"), "CPU time limit of 1s"),
        "memory": (snippet("memory", MEMORY, memory_mb=128), "memory limit of 128 MB exceeded"),
        "forks": (snippet("forks", FORKS, timeout="60s"), "process limit of 32 reached"),
        "database": (snippet("database", READ, database), "FileNotFoundError"),
        "environ": (snippet("environ", ENVIRON), None),
        "socket": (snippet("socket", CONNECT, port), "network is disabled for code nodes"),
    }
    started = {name: await start(conveyor, d) for name, (d, _) in hostile.items()}
    for name, execution_id in started.items():
        execution = await finished(conveyor, execution_id)
        expected = hostile[name][1]
        if expected is None:
            assert execution["status"] == "succeeded", execution.get("error")
            (step,) = execution["steps"]
            assert "CONVEYOR_SECRET_KEY" not in step["output"]
        else:
            assert execution["status"] == "failed", name
            assert expected in step_error(execution), (name, step_error(execution))
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
