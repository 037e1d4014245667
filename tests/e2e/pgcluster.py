"""A private, throwaway PostgreSQL cluster for the tests that stop or restart the server
(``initdb`` into a temporary folder, ``pg_ctl`` on a free port): the shared PostgreSQL on
127.0.0.1:5432 serves other tests concurrently and is never touched.

PostgreSQL refuses to run as root; as root, every ``initdb`` and ``pg_ctl`` runs as the
``postgres`` user (``runuser``) on a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest


def _binaries() -> Path | None:
    found = shutil.which("initdb")
    candidates = [found] if found else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    for candidate in candidates:
        if candidate and Path(candidate).exists() and Path(candidate).with_name("pg_ctl").exists():
            return Path(candidate).resolve().parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


class Cluster:
    """One cluster: ``start``, ``stop(mode)``, ``url(database)``, ``create(database)``."""

    def __init__(self) -> None:
        bin_dir = _binaries()
        if bin_dir is None:
            _skip_or_fail("initdb/pg_ctl not found (PATH, /usr/lib/postgresql/*/bin)")
        assert bin_dir is not None
        self.bin = bin_dir
        self.as_user: list[str] = []
        self.folder = Path(tempfile.mkdtemp(prefix="conveyor-pg-"))
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                _skip_or_fail("running as root without runuser: initdb refuses root")
            shutil.chown(self.folder, "postgres")
            self.as_user = [str(runuser), "-u", "postgres", "--"]
        self.data = self.folder / "data"
        self.port = _free_port()
        # --no-sync: the new cluster's files need not reach the disk before it starts (it
        # is thrown away); the server itself runs with fsync on, as a crash test needs.
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.folder}'\nfsync = on\n"
                "max_connections = 200\n"
            )

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [*self.as_user, str(self.bin / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"{program} failed:\n{done.stdout}\n{done.stderr}\n{self.log()}")

    def log(self) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def start(self) -> None:
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create(self, database: str) -> str:
        self.admin(f"CREATE DATABASE {database}")
        return self.url(database)

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def wait_until(check: object, within: float, what: str) -> None:
    """Poll ``check()`` (synchronously) until true, or fail after ``within`` seconds."""
    assert callable(check)
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g}s")
        time.sleep(0.05)
