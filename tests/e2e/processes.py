"""Start, signal and stop real ``conveyor worker`` processes for the e2e tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from sqlalchemy.engine import URL, make_url

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

    def __init__(
        self, popen: subprocess.Popen[bytes], log_path: Path, log: IO[bytes], database: URL
    ) -> None:
        self.popen = popen
        self.database = database
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
        """SIGKILL and reap; returns the time of the kill. On PostgreSQL, also wait until the
        server has ended the dead process's sessions (up to 10 s): a COMMIT it had sent
        still lands after the kill, so only then does the database show what it left (an
        execution that looked held right after the kill could still finish under it)."""
        ports = self._database_ports()
        self.killed_at = time.time()
        self.send(signal.SIGKILL)
        self.popen.wait(timeout=10)
        if ports:
            _until_sessions_end(self.database, ports, within=10.0)
        return self.killed_at

    def stop(self) -> None:
        self.send(signal.SIGSTOP)

    def cont(self) -> None:
        self.send(signal.SIGCONT)

    def connected(self) -> bool:
        """Whether the process has opened its database (the SQLite file, or a TCP connection
        to the PostgreSQL port): past its imports and about to claim."""
        try:
            targets = [
                os.readlink(f"/proc/{self.pid}/fd/{fd}")
                for fd in os.listdir(f"/proc/{self.pid}/fd")
            ]
        except OSError:
            return False
        if self.database.get_backend_name() == "sqlite":
            return str(Path(self.database.database or "").resolve()) in targets
        return bool(self._database_ports())

    def _database_ports(self) -> set[int]:
        """The local ports of the process's TCP connections to PostgreSQL (none on SQLite,
        or once it is gone)."""
        if self.database.get_backend_name() == "sqlite":
            return set()
        try:
            targets = [
                os.readlink(f"/proc/{self.pid}/fd/{fd}")
                for fd in os.listdir(f"/proc/{self.pid}/fd")
            ]
        except OSError:
            return set()
        inodes = {t[8:-1] for t in targets if t.startswith("socket:[")}
        port = f"{self.database.port or 5432:04X}"
        found = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    if fields[2].endswith(f":{port}") and fields[9] in inodes:
                        found.add(int(fields[1].rsplit(":", 1)[1], 16))
        return found

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        """Make sure the process is gone and reaped (the test is over: no grace needed)."""
        if self.alive:
            self.send(signal.SIGKILL)
            self.popen.wait(timeout=10)
        self._log.close()


def _until_sessions_end(database: URL, ports: set[int], within: float) -> None:
    """Until PostgreSQL has no session left from those client ports (or ``within`` s)."""
    import psycopg

    conninfo = database.set(drivername="postgresql").render_as_string(hide_password=False)
    deadline = time.monotonic() + within
    with psycopg.connect(conninfo, autocommit=True) as conn:
        while time.monotonic() < deadline:
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(%s)",
                [sorted(ports)],
            ).fetchone()
            if not left or not left[0]:
                return
            time.sleep(0.01)


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
        process = WorkerProcess(popen, log_path, log, make_url(self.database_url))
        self.started.append(process)
        return process

    @property
    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.started if w.alive]

    def logs(self) -> str:
        return "\n".join(
            f"--- {w.log_path.name} (pid {w.pid}) ---\n{w.log_text()[-4000:]}" for w in self.started
        )

    def lease_trouble(self, pid: int) -> list[str]:
        """The lines of a worker's log about lost leases or failed heartbeats."""
        for process in self.started:
            if process.pid == pid:
                return [
                    line
                    for line in process.log_text().splitlines()
                    if "lease lost" in line or "heartbeat" in line
                ]
        return [f"(no worker with pid {pid})"]

    def close(self) -> None:
        for process in self.started:
            process.close()
