"""What every command shares: options, error mapping to exit codes, opening Conveyor.

Loading this module (and every command module) costs only Typer and the
standard library, so ``--help`` and ``--version`` answer at once: what a command needs
beyond that (the app, the store, pydantic, SQLAlchemy) is imported inside it.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from conveyor.cli.exits import describe, exit_code
from conveyor.errors import ConveyorError, InputError

if TYPE_CHECKING:
    from rich.console import Console

    from conveyor.app import Conveyor
    from conveyor.engine.limits import Limits
    from conveyor.settings import Settings
    from conveyor.worker import WorkerSettings

T = TypeVar("T")
log = logging.getLogger("conveyor.cli")


class LazyConsole:
    """A Rich console made on first print: Rich costs a process about 2 MB, which
    ``conveyor worker`` (it logs, it does not print) should not pay."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)


out = LazyConsole()
err = LazyConsole(stderr=True)
# conveyor.settings' default, repeated so that option defaults need no pydantic import;
# tests/unit/test_cli.py keeps the two equal.
DEFAULT_DATABASE_URL = "sqlite:///conveyor.db"
# Click's plain help layout for every Typer app: Typer's Rich layout prints a type after
# every option, so boolean flags read ``--json <bool>`` as if they took a value (and it
# would import Rich's whole rendering stack just to print --help).
HELP_FORMAT: dict[str, Any] = {"rich_markup_mode": None}

DatabaseOpt = Annotated[
    str,
    typer.Option(
        "--database",
        "-d",
        metavar="URL",
        envvar="CONVEYOR_DATABASE_URL",
        help="sqlite:///FILE, a file path, or postgresql://user@host/db",
    ),
]


PluginOpt = Annotated[
    list[str],
    typer.Option(
        "--plugin", "-p", metavar="MODULE", help="Python module defining node types (repeatable)"
    ),
]


PrivateOpt = Annotated[
    bool,
    typer.Option(
        "--allow-private-network",
        envvar="CONVEYOR_ALLOW_PRIVATE_NETWORK",
        help="let http.request reach loopback and private addresses",
    ),
]


InputOpt = Annotated[
    str | None,
    typer.Option(
        "--input",
        "-i",
        metavar="JSON|@FILE",
        help="input as JSON, or @FILE to read JSON from a file",
    ),
]


WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait-for-database",
        envvar="CONVEYOR_WAIT_FOR_DATABASE",
        min=0,
        metavar="SECONDS",
        help="wait this long for a database server that does not answer yet (0: fail at once)",
    ),
]
SchedulerOpt = Annotated[
    bool,
    typer.Option(
        "--scheduler/--no-scheduler",
        envvar="CONVEYOR_SCHEDULER",
        help="also fire due schedules (each occurrence fires once, however many run it)",
    ),
]


JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


ExecutionArg = Annotated[str, typer.Argument(help="execution id (or a unique prefix)")]


def guard(action: Callable[[], int]) -> None:
    """Run a command body; map Conveyor errors to one-line messages and exit codes. A
    command that changed something is then written to the audit log (cli/audit.py)."""
    from conveyor.cli.audit import record_command

    try:
        code = action()
    except ConveyorError as exc:
        for line in describe(exc):
            err.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(exc)) from None
    try:
        record_command()
    except Exception as exc:  # done is done: say what is missing, keep the command's code
        err.print(f"warning: the audit entry was not recorded: {exc}", style="yellow")
    raise typer.Exit(code)


# How often a thread that wants the GIL gets it from one that runs Python: a long-running
# server or worker hands it over every millisecond, not Python's default 5 ms (see
# long_running).
SWITCH_INTERVAL_SECONDS = 0.001


def long_running() -> None:
    """Tune this process for ``conveyor server`` and ``conveyor worker``.

    Their database calls run on threads, which wait for the GIL after every statement while
    the event loop runs Python (streams, the runner, HTTP). A transaction holds its locks
    (SQLite's one write lock, PostgreSQL's row locks) through those waits, so each wait of
    up to 5 ms stretches it, and every other writer waits too. At 1 ms, measured with
    ``bench/streams.py`` on two cores: a server with its embedded worker ran 12-21 % more
    executions/s with no stream open and 24-33 % more with 100 open, and 100 open streams
    cost it 5-6 % of its rate instead of 15 %."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)


def freeze_loaded() -> None:
    """Called by ``conveyor server`` and ``conveyor worker`` once everything is loaded, just
    before they serve: the objects that exist then (modules, the app, the registry: about
    200,000) live as long as the process, so the garbage collector stops looking at them.
    Before, each full collection walked them all: a pause of about 65 ms every few seconds
    under load (``bench/streams.py``), in the middle of whatever the event loop was doing."""
    gc.collect()
    gc.freeze()


def run_async(coro: Awaitable[T]) -> T:
    import asyncio

    return asyncio.run(coro)  # type: ignore[arg-type]


def registry_for(plugins: list[str], allow_private: bool) -> Any:
    from conveyor.nodes.builtin import build_registry
    from conveyor.nodes.llm_prices import load_prices
    from conveyor.settings import Settings

    if plugins and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    settings = Settings()
    return build_registry(
        allow_private_network=allow_private,
        allow_unsandboxed_code=settings.allow_unsandboxed_code,
        outbound_allowlist=settings.outbound_allowlist,
        plugins=plugins,
        llm_prices=load_prices(settings.llm_prices),
    )


def limits_of(settings: Settings) -> Limits:
    from conveyor.engine.limits import Limits

    return Limits(
        request_bytes=settings.max_request_bytes,
        input_bytes=settings.max_input_bytes,
        definition_bytes=settings.max_definition_bytes,
        step_output_bytes=settings.max_step_output_bytes,
        log_lines=settings.max_log_lines,
    )


def worker_settings(settings: Settings, concurrency: int) -> WorkerSettings:
    from conveyor.worker import WorkerSettings

    return WorkerSettings(
        concurrency=concurrency,
        lease=settings.lease,
        heartbeat=settings.heartbeat,
        poll=timedelta(seconds=settings.poll_seconds),
        hold_timers_up_to=timedelta(seconds=settings.hold_timers_seconds),
        max_recoveries=settings.max_recoveries,
        shutdown_grace=timedelta(seconds=settings.shutdown_grace_seconds),
        limits=limits_of(settings),
    )


def parse_input(raw: str | None) -> Any:
    from conveyor.engine.definition import TooLarge, load_json

    if raw is None:
        return {}
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read input file {raw[1:]}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"input file {raw[1:]} is not UTF-8 text: {exc.reason}") from None
    try:
        return load_json(text)
    except (ValueError, TooLarge) as exc:  # as the API reads input: no 1e400, NUL, ...
        raise InputError(f"--input is not valid JSON: {exc}") from None


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


async def open_conveyor(
    database: str, plugins: list[str] | None = None, registry: Any = None
) -> Conveyor:
    """Conveyor on ``database`` with the limits of the CONVEYOR_* settings."""
    from conveyor.app import Conveyor
    from conveyor.settings import Settings

    registry = registry or registry_for(plugins or [], False)
    return await Conveyor.open(database, registry, limits=limits_of(Settings()))


async def open_waiting(database: str, registry: Any, wait: float) -> Conveyor:
    """:func:`open_conveyor`, waiting up to ``wait`` seconds for a database server that does
    not answer yet (started beside this process, restarting): one warning per try, tries
    0.5 s apart, doubling up to 5 s. Anything else (a wrong URL, a file that is not a
    database) fails at once."""
    import asyncio
    import time

    from conveyor.errors import DatabaseUnreachable

    deadline = time.monotonic() + wait
    pause = 0.5
    while True:
        try:
            return await open_conveyor(database, registry=registry)
        except DatabaseUnreachable as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            pause = min(pause, left)
            log.warning("%s; trying again in %.1f s", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


def with_conveyor(database: str, action: Callable[[Conveyor], Awaitable[T]]) -> T:
    async def go() -> T:
        conveyor = await open_conveyor(database)
        try:
            return await action(conveyor)
        finally:
            conveyor.close()

    return run_async(go())


async def full_id(conveyor: Conveyor, execution_id: str) -> str:
    detail = await conveyor.store.get_execution(conveyor.workspace_id, execution_id)
    return str(detail["id"])
