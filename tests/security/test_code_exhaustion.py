"""Code-node escapes and resource exhaustion in one real execution on both backends: every
snippet that attacks its worker (memory, processes, CPU, wall clock, output, log lines,
signals to every process it can see) ends as its own step error within its limits, while a
sibling step succeeds and the worker (this process) carries on."""

from __future__ import annotations

import os
import time

from conveyor.app import Conveyor
from tests.integration.test_runner import execute, workflow
from tests.support import require_bubblewrap


def snippet(id: str, body: str, **limits: object) -> dict[str, object]:
    code = "import os, signal, time\ndef main(input):\n" + "".join(
        f"    {line}\n" for line in body.splitlines()
    )
    return {"id": id, "type": "code", "config": {"code": code, **limits}}


ATTACKS = [
    snippet(
        "memory", "blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))", memory_mb=128
    ),
    snippet("fork", "while True:\n    os.fork()", timeout="20s"),
    snippet("spin", "while True:\n    pass", cpu_seconds=1),
    snippet("sleep", "time.sleep(600)", timeout="1s"),
    snippet("output", "return 'x' * 3_000_000"),
    snippet("printing", "while True:\n    print('x' * 1000)", timeout="2s"),
    snippet(
        "signals",
        "try:\n    os.kill(-1, signal.SIGKILL)\nexcept ProcessLookupError:\n    pass\n"
        "os.kill(os.getppid(), signal.SIGKILL)",
    ),
]
EXPECTED = {
    "memory": "memory limit of 128 MB exceeded (memory_mb)",
    "fork": "process limit of 32 reached (a fork bomb?)",
    "spin": "CPU time limit of 1s exceeded (cpu_seconds)",
    "sleep": "wall-clock timeout of 1s exceeded",
    "output": "output larger than 1048576 bytes (max_output_bytes)",
    "printing": "wall-clock timeout of 2s exceeded",
    # kill(-1) finds no process it may signal in the sandbox's own PID namespace; its
    # parent there is bubblewrap, which it may not signal either.
    "signals": "PermissionError: [Errno 1] Operation not permitted",
}


async def test_attacking_snippets_fail_alone_and_the_worker_carries_on(conveyor: Conveyor) -> None:
    require_bubblewrap()
    started = time.monotonic()
    finished = await execute(
        conveyor,
        workflow(
            "attacks",
            *ATTACKS,
            {"id": "healthy", "type": "transform", "config": {"output": "fine"}},
            on_error="continue",
        ),
    )
    elapsed = time.monotonic() - started
    print(f"{elapsed:.1f}s")
    assert finished.step("healthy")["status"] == "succeeded"
    for attack in ATTACKS:
        step = finished.step(str(attack["id"]))
        assert step["status"] == "failed", (attack["id"], step)
        assert EXPECTED[str(attack["id"])] in step["error"]["message"], step["error"]
    assert len(finished.step("printing")["logs"]) <= conveyor.limits.log_lines + 1
    assert os.getpid() > 0  # still here: nothing reached this process
    assert elapsed < 60, elapsed  # every limit is seconds; generous for a loaded machine
