"""Start, signal and stop real ``conveyor worker`` processes for the e2e tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]

# The test profile: short leases and intervals so recovery takes seconds.
LEASE = 2.0
HEARTBEAT = 0.5
POLL = 0.2

PROFILE = {
    "CONVEYOR_LEASE_SECONDS": str(LEASE),
    "CONVEYOR_HEARTBEAT_SECONDS": str(HEARTBEAT),
    "CONVEYOR_POLL_SECONDS": str(POLL),
    "CONVEYOR_MAX_RECOVERIES": "20",
    "CONVEYOR_HOLD_TIMERS_SECONDS": "1",
    "CONVEYOR_SHUTDOWN_GRACE_SECONDS": "5",
}


class WorkerProcess:
    """One ``conveyor worker`` subprocess; its output goes to a log file."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path, log: IO[bytes]) -> None:
        self.popen = popen
        self.log_path = log_path
        self._log = log
        self.started_at = time.time()
        self.killed_at: float | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: signal.Signals) -> None:
        if self.alive:
            os.kill(self.pid, sig)

    def kill(self) -> float:
        """SIGKILL and reap; returns the time of the kill."""
        self.killed_at = time.time()
        self.send(signal.SIGKILL)
        self.popen.wait(timeout=10)
        return self.killed_at

    def stop(self) -> None:
        self.send(signal.SIGSTOP)

    def cont(self) -> None:
        self.send(signal.SIGCONT)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        """Make sure the process is gone (gracefully if it can), and reap it."""
        if self.alive:
            self.send(signal.SIGCONT)
            self.send(signal.SIGTERM)
            try:
                self.popen.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()


class Workers:
    """Starts workers on one database; ``close`` stops every one it started."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(self, concurrency: int = 8, **env: str) -> WorkerProcess:
        environment = dict(os.environ)
        environment.update(PROFILE)
        environment.update(
            {
                "CONVEYOR_DATABASE_URL": self.database_url,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(
                    p for p in (str(REPO), environment.get("PYTHONPATH", "")) if p
                ),
            }
        )
        environment.update(env)
        log_path = self.log_dir / f"worker-{len(self.started)}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from conveyor.cli.main import main; main()",
                "worker",
                "--plugin",
                "tests.e2e.nodes",
                "--concurrency",
                str(concurrency),
            ],
            cwd=REPO,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        process = WorkerProcess(popen, log_path, log)
        self.started.append(process)
        return process

    @property
    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.started if w.alive]

    def logs(self) -> str:
        return "\n".join(
            f"--- {w.log_path.name} (pid {w.pid}) ---\n{w.log_text()[-4000:]}" for w in self.started
        )

    def close(self) -> None:
        for process in self.started:
            process.close()
