"""A real idle `conveyor worker`, on both databases, has not loaded what it does not use
(tests/unit/test_worker_imports.py names each library and what it costs): what it imports
on its way to the first claim (opening the store, NOTIFY, the scheduler) is checked here.

The launcher below adds a SIGUSR1 handler that writes ``sys.modules`` (and the GIL's switch
interval and the objects frozen out of garbage collection) to files; nothing in Conveyor
knows about it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.cli.base import SWITCH_INTERVAL_SECONDS
from tests.unit.test_worker_imports import NOT_IN_A_WORKER

LAUNCHER = """
import gc, os, signal, sys
def dump(*_):
    path = os.environ["MODULES_FILE"]
    with open(path + ".switch", "w") as f:
        f.write(repr(sys.getswitchinterval()))
    with open(path + ".frozen", "w") as f:
        f.write(repr(gc.get_freeze_count()))
    with open(path + ".part", "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
    os.replace(path + ".part", path)
signal.signal(signal.SIGUSR1, dump)
from conveyor.cli.main import main
main()
"""


def until(done: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, f"not within {within} s"
        time.sleep(0.02)


@pytest.mark.timeout(120)
def test_an_idle_worker_has_not_loaded_what_it_does_not_use(
    database_url: str, tmp_path: Path
) -> None:
    modules = tmp_path / "modules.txt"
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": database_url,
        "CONVEYOR_POLL_SECONDS": "0.05",
        "CONVEYOR_SCHEDULER_POLL_SECONDS": "0.05",
        "MODULES_FILE": str(modules),
    }
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        until(lambda: b" started: " in log.read_bytes() or worker.poll() is not None, 60)
        assert worker.poll() is None, log.read_text(errors="replace")
        # Started: the store is open and the first claim is under way (short polls, so that
        # the claim loop and the scheduler have usually looked more than once by the time
        # the handler runs; a module loaded later would be missed, never a false failure).
        worker.send_signal(signal.SIGUSR1)
        until(modules.exists, 30)
        names = modules.read_text().split()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert [m for m in NOT_IN_A_WORKER if m in names and m != "psycopg"] == []
    assert ("psycopg" in names) == database_url.startswith("postgresql")
    # A long-running process hands the GIL over every millisecond (cli/base.long_running).
    switch = float(Path(f"{modules}.switch").read_text())
    assert switch == SWITCH_INTERVAL_SECONDS != sys.getswitchinterval(), switch
    # What it loaded before serving is out of the collector's way (cli/base.freeze_loaded):
    # tens of thousands of objects (modules, classes, the registry) that it walked on each
    # full collection.
    frozen = int(Path(f"{modules}.frozen").read_text())
    assert frozen > 20_000, frozen
