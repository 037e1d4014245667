"""What loading the command line costs: heavy libraries a worker does not need stay unloaded
until a command or a node uses them (each costs a worker process megabytes of memory)."""

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


def test_the_command_line_loads_no_lazy_library() -> None:
    code = f"import sys, conveyor.cli.main; print(*(m for m in {LAZY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    assert loaded == []
