"""What loading the command line and starting a worker cost: heavy libraries a worker does
not need stay unloaded until a command or a node uses them (each costs a worker process
megabytes of memory; bench/worker_memory.py measures it, tests/e2e/test_idle_worker.py checks
a real idle worker on both databases)."""

from __future__ import annotations

import subprocess
import sys

# Loaded lazily: alembic when a migration must run, httpx (with anyio, httpcore, certifi)
# when an http.request step runs, psycopg when a PostgreSQL engine is created, the API
# stack when ``conveyor server`` starts, aiosmtplib when an email.send step runs.
LAZY = (
    "alembic",
    "httpx",
    "httpcore",
    "anyio",
    "certifi",
    "psycopg",
    "fastapi",
    "uvicorn",
    "aiosmtplib",
)
# Not loaded by a worker until something uses them (MB of RSS each, measured with
# bench/worker_memory.py): cryptography (8; a credential is decrypted), jsonschema with
# referencing (3; an execution with a declared input is enqueued), Rich (2; the CLI prints),
# croniter with dateutil (1; a cron schedule is read), argon2 (1; a password is hashed),
# pydantic-settings (3; no longer used at all), the web app and the dashboard's pages.
NOT_IN_A_WORKER = (
    *LAZY,
    "cryptography",
    "jsonschema",
    "referencing",
    "rich",
    "croniter",
    "dateutil",
    "argon2",
    "pydantic_settings",
    "starlette",
    "sqlalchemy.orm",
    "pymysql",
    "conveyor.api",
    "conveyor.web",
    "conveyor.server",
    "conveyor.cli.display",
)
# What `conveyor worker` loads before its first claim: the command, its module, the
# settings it reads and the registry of built-in node types.
WORKER_STARTUP = """
import sys
import conveyor.cli.main, conveyor.cli.worker
from conveyor.cli.base import registry_for, worker_settings
from conveyor.settings import Settings
settings = Settings()
registry_for([], False)
worker_settings(settings, 8)
"""


def loaded(code: str, names: tuple[str, ...]) -> list[str]:
    probe = f"{code}\nprint(*(m for m in {names!r} if m in sys.modules))"
    return subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()


def test_the_command_line_loads_no_lazy_library() -> None:
    assert loaded("import sys, conveyor.cli.main", LAZY) == []


def test_starting_a_worker_loads_nothing_it_does_not_need() -> None:
    assert loaded(WORKER_STARTUP, NOT_IN_A_WORKER) == []
