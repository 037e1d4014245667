"""The ``conveyor`` command line (Typer + Rich)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from conveyor.app import Conveyor
from conveyor.cli.display import LiveNodes, duration, steps_table, styled, summary_table
from conveyor.cli.exits import FAILED, INTERRUPTED, OK, describe, exit_code
from conveyor.engine.definition import definition_schema, load_definition_file
from conveyor.engine.interfaces import SystemClock
from conveyor.errors import ConveyorError, InputError
from conveyor.nodes.builtin import build_registry
from conveyor.settings import DEFAULT_DATABASE_URL, Settings
from conveyor.store import Database
from conveyor.store.history import ExecutionFilter
from conveyor.worker import Worker, WorkerSettings

T = TypeVar("T")
out = Console()
err = Console(stderr=True)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Conveyor: durable workflow automation on SQLite or PostgreSQL.",
)
executions_app = typer.Typer(no_args_is_help=True, help="Read and control executions.")
workflows_app = typer.Typer(no_args_is_help=True, help="Store and list workflows.")
db_app = typer.Typer(no_args_is_help=True, help="Manage the database.")
app.add_typer(executions_app, name="executions")
app.add_typer(workflows_app, name="workflows")
app.add_typer(db_app, name="db")

DatabaseOpt = Annotated[
    str,
    typer.Option(
        "--database",
        "-d",
        envvar="CONVEYOR_DATABASE_URL",
        help="sqlite:///FILE, a file path, or postgresql://user@host/db",
    ),
]
PluginOpt = Annotated[
    list[str], typer.Option("--plugin", "-p", help="Python module defining node types (repeatable)")
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
    typer.Option("--input", "-i", help="input as JSON, or @FILE to read JSON from a file"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of tables")]


def main() -> None:
    app()


def _guard(action: Callable[[], int]) -> None:
    """Run a command body; map Conveyor errors to one-line messages and exit codes."""
    try:
        code = action()
    except ConveyorError as exc:
        for line in describe(exc):
            err.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exit_code(exc)) from None
    raise typer.Exit(code)


def _async(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def _registry(plugins: list[str], allow_private: bool) -> Any:
    if plugins and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return build_registry(allow_private_network=allow_private, plugins=plugins)


def worker_settings(settings: Settings, concurrency: int) -> WorkerSettings:
    return WorkerSettings(
        concurrency=concurrency,
        lease=settings.lease,
        heartbeat=settings.heartbeat,
        poll=timedelta(seconds=settings.poll_seconds),
        hold_timers_up_to=timedelta(seconds=settings.hold_timers_seconds),
        max_recoveries=settings.max_recoveries,
        shutdown_grace=timedelta(seconds=settings.shutdown_grace_seconds),
    )


def parse_input(raw: str | None) -> Any:
    if raw is None:
        return {}
    text = raw
    if raw.startswith("@"):
        try:
            text = Path(raw[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read input file {raw[1:]}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--input is not valid JSON: {exc}") from None


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


async def _open(database: str, plugins: list[str] | None = None) -> Conveyor:
    return await Conveyor.open(database, _registry(plugins or [], False))


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="workflow definition (YAML or JSON)")],
    input: InputOpt = None,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    plugin: PluginOpt = [],  # noqa: B006
    allow_private_network: PrivateOpt = False,
) -> None:
    """Run a workflow file once, in this process, with live progress. Exit 0 on success,
    1 when the execution did not succeed, 2 for bad input, 130 when interrupted.

    The result is printed as JSON on stdout; progress and the summary go to stderr."""

    def body() -> int:
        data = load_definition_file(file)
        payload = parse_input(input)
        registry = _registry(plugin, allow_private_network)
        try:
            return _async(_run(data, payload, database, registry))
        except KeyboardInterrupt:
            err.print("interrupted: the execution was recorded as cancelled", style="magenta")
            return INTERRUPTED

    _guard(body)


async def _run(data: dict[str, Any], payload: Any, database: str, registry: Any) -> int:
    conveyor = await Conveyor.open(database, registry)
    try:
        conveyor.validate(data)
        ref = await conveyor.apply(data)
        enqueued = await conveyor.execute(ref.workflow_id, payload)
        detail = await _watch(conveyor, enqueued.execution_id)
    finally:
        conveyor.close()
    return _report(detail)


async def _watch(conveyor: Conveyor, execution_id: str) -> dict[str, Any]:
    """Run an enqueued execution in this process with the live node table."""
    detail = await conveyor.store.get_execution(conveyor.workspace_id, execution_id)
    ref = await conveyor.store.find_version(
        conveyor.workspace_id, detail["workflow_id"], detail["version"]
    )
    order = [(n["id"], n["type"]) for n in ref.definition["nodes"]]
    live = LiveNodes(execution_id, order, detail["steps"])
    conveyor.store.listeners.append(live.on_events)
    worker = Worker(conveyor.store, conveyor.registry, SystemClock())
    with Live(live, console=err, refresh_per_second=10, transient=err.is_terminal):
        await worker.run_one(execution_id)
    final = await conveyor.store.get_execution(conveyor.workspace_id, execution_id)
    final["order"] = [n for n, _ in order]
    return final


def _report(detail: dict[str, Any]) -> int:
    """Summary on stderr, result (or error) as JSON on stdout; the exit code."""
    err.print(summary_table(detail, detail.get("order")))
    status = detail["status"]
    err.print("status:", styled(status), duration(detail["started_at"], detail["finished_at"]))
    if status == "succeeded":
        print(_json(detail["result"]))
        return OK
    if detail["error"]:
        err.print(f"error: {detail['error'].get('message')}", style="red", markup=False)
    print(_json({"status": status, "error": detail["error"]}))
    return FAILED


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="workflow definition (YAML or JSON)")],
    plugin: PluginOpt = [],  # noqa: B006
) -> None:
    """Check a definition without running it (exit 2 listing every problem)."""

    def body() -> int:
        data = load_definition_file(file)
        registry = _registry(plugin, False)
        from conveyor.engine.validation import validate as check

        definition = check(data, registry)
        out.print(
            f"ok: {definition.name} ({len(definition.nodes)} nodes, "
            f"{len(definition.all_edges())} edges)"
        )
        return OK

    _guard(body)


@app.command()
def schema() -> None:
    """Print the JSON Schema of workflow definitions."""
    print(_json(definition_schema()))


@app.command()
def execute(
    workflow: Annotated[str, typer.Argument(help="workflow name or id")],
    input: InputOpt = None,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    idempotency_key: Annotated[str | None, typer.Option(help="deduplicates enqueues")] = None,
    priority: Annotated[int | None, typer.Option(help="higher runs first")] = None,
    version: Annotated[int | None, typer.Option(help="version (default: latest)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="run it here and follow it live")] = False,
    plugin: PluginOpt = [],  # noqa: B006
    allow_private_network: PrivateOpt = False,
) -> None:
    """Enqueue an execution of a stored workflow and print its id (or, with --wait, run it
    in this process with live progress; exit codes as for ``run``)."""

    def body() -> int:
        payload = parse_input(input)

        async def go() -> str:
            conveyor = await _open(database)
            try:
                enqueued = await conveyor.execute(
                    workflow,
                    payload,
                    version=version,
                    idempotency_key=idempotency_key,
                    priority=priority,
                )
                return enqueued.execution_id
            finally:
                conveyor.close()

        execution_id = _async(go())
        if wait:
            return _follow(database, execution_id, _registry(plugin, allow_private_network))
        print(execution_id)
        return OK

    _guard(body)


@app.command()
def worker(
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    concurrency: Annotated[int, typer.Option(min=1, max=10_000)] = 8,
    plugin: PluginOpt = [],  # noqa: B006
    allow_private_network: PrivateOpt = False,
) -> None:
    """Run a worker: claim queued executions and run them until SIGTERM or Ctrl-C."""

    def body() -> int:
        settings = Settings()
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        registry = _registry(plugin, allow_private_network)

        async def go() -> None:
            conveyor = await Conveyor.open(database, registry)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            import signal

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            try:
                await Worker(
                    conveyor.store,
                    registry,
                    SystemClock(),
                    settings=worker_settings(settings, concurrency),
                ).serve(stop)
            finally:
                conveyor.close()

        _async(go())
        return OK

    _guard(body)


@workflows_app.command("apply")
def workflows_apply(
    file: Annotated[Path, typer.Argument(help="workflow definition (YAML or JSON)")],
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    plugin: PluginOpt = [],  # noqa: B006
) -> None:
    """Store a definition as the next version of its workflow."""

    def body() -> int:
        data = load_definition_file(file)

        async def go() -> Any:
            conveyor = await _open(database, plugin)
            try:
                return await conveyor.apply(data)
            finally:
                conveyor.close()

        ref = _async(go())
        state = "stored" if ref.created else "unchanged"
        out.print(f"{ref.workflow_name} version {ref.version} {state} ({ref.workflow_id})")
        return OK

    _guard(body)


@workflows_app.command("list")
def workflows_list(database: DatabaseOpt = DEFAULT_DATABASE_URL, as_json: JsonOpt = False) -> None:
    """List the workflows of the workspace."""

    def body() -> int:
        async def go() -> list[dict[str, Any]]:
            conveyor = await _open(database)
            try:
                return await conveyor.store.list_workflows(conveyor.workspace_id)
            finally:
                conveyor.close()

        rows = _async(go())
        if as_json:
            print(_json(rows))
            return OK
        table = Table()
        for header in ("name", "version", "status", "finished", "succeeded", "id"):
            table.add_column(header)
        for r in rows:
            table.add_row(
                r["name"],
                str(r["latest_version"]),
                r["status"],
                str(r["executions_finished"]),
                str(r["executions_succeeded"]),
                r["id"],
            )
        out.print(table)
        return OK

    _guard(body)


@executions_app.command("list")
def executions_list(
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    status: Annotated[str | None, typer.Option(help="only this status")] = None,
    workflow: Annotated[str | None, typer.Option(help="only this workflow (name or id)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List executions, newest first."""

    def body() -> int:
        async def go() -> list[dict[str, Any]]:
            conveyor = await _open(database)
            try:
                workflow_id = None
                if workflow:
                    ref = await conveyor.store.find_version(conveyor.workspace_id, workflow)
                    workflow_id = ref.workflow_id
                return await conveyor.store.list_executions(
                    ExecutionFilter(
                        workspace_id=conveyor.workspace_id,
                        status=status,
                        workflow_id=workflow_id,
                        limit=limit,
                    )
                )
            finally:
                conveyor.close()

        rows = _async(go())
        if as_json:
            print(_json(rows))
            return OK
        table = Table()
        for header in ("id", "workflow", "status", "trigger", "created", "duration", "steps"):
            table.add_column(header)
        for r in rows:
            done = r["steps_succeeded"] + r["steps_failed"] + r["steps_skipped"]
            table.add_row(
                r["id"],
                r["workflow_name"],
                styled(r["status"]),
                r["trigger_type"],
                r["created_at"].isoformat(timespec="seconds"),
                duration(r["started_at"], r["finished_at"]),
                f"{done}/{r['steps_total']}",
            )
        out.print(table)
        return OK

    _guard(body)


@executions_app.command("show")
def executions_show(
    execution_id: Annotated[str, typer.Argument(help="execution id (or a unique prefix)")],
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    as_json: JsonOpt = False,
) -> None:
    """Show one execution: status, trigger data, and every step's input, output and error."""

    def body() -> int:
        async def go() -> dict[str, Any]:
            conveyor = await _open(database)
            try:
                return await conveyor.store.get_execution(conveyor.workspace_id, execution_id)
            finally:
                conveyor.close()

        detail = _async(go())
        if as_json:
            print(_json(detail))
            return OK
        _print_detail(detail)
        return OK

    _guard(body)


def _print_detail(detail: dict[str, Any]) -> None:
    out.print(
        f"[bold]{detail['id']}[/]  {detail['workflow_name']} v{detail['version']}  ",
        styled(detail["status"]),
        f"  trigger: {detail['trigger_type']}",
    )
    out.print(
        f"created {detail['created_at'].isoformat()}  duration "
        f"{duration(detail['started_at'], detail['finished_at']) or '-'}"
    )
    if detail.get("blocked_reason"):
        out.print(f"not running because: {detail['blocked_reason']}", markup=False, soft_wrap=True)
    out.print("input:", _json(detail["input"]), markup=False, highlight=False)
    if detail["result"] is not None:
        out.print("result:", _json(detail["result"]), markup=False, highlight=False)
    if detail["error"] is not None:
        out.print("error:", _json(detail["error"]), markup=False, highlight=False, style="red")
    out.print(steps_table(detail))
    for step in detail["steps"]:
        if step["attempt"] == 0:
            continue
        out.print(f"[bold]{step['node_id']}[/] attempt {step['attempt']} ({step['status']})")
        for name in ("input", "output", "error", "logs"):
            if step[name] not in (None, [], {}):
                out.print(f"  {name}: {_json(step[name])}", markup=False, highlight=False)


def _control(database: str, action: Callable[[Conveyor], Awaitable[T]]) -> T:
    async def go() -> T:
        conveyor = await _open(database)
        try:
            return await action(conveyor)
        finally:
            conveyor.close()

    return _async(go())


ExecutionArg = Annotated[str, typer.Argument(help="execution id (or a unique prefix)")]


async def _full_id(conveyor: Conveyor, execution_id: str) -> str:
    detail = await conveyor.store.get_execution(conveyor.workspace_id, execution_id)
    return str(detail["id"])


@executions_app.command("cancel")
def executions_cancel(
    execution_id: ExecutionArg, database: DatabaseOpt = DEFAULT_DATABASE_URL
) -> None:
    """Cancel: queued or waiting ones at once, running ones within a second."""

    async def act(c: Conveyor) -> str:
        return await c.cancel(await _full_id(c, execution_id))

    _guard(
        lambda: _say(
            {
                "cancelled": "cancelled",
                "running": "cancel requested; its worker stops it within a second",
            },
            _control(database, act),
        )
    )


def _say(messages: dict[str, str], status: str) -> int:
    out.print(messages.get(status, f"nothing to do: the execution is already {status}"))
    return OK


@executions_app.command("pause")
def executions_pause(
    execution_id: ExecutionArg, database: DatabaseOpt = DEFAULT_DATABASE_URL
) -> None:
    """Pause: start no new step (running steps finish) until resumed."""

    async def act(c: Conveyor) -> str:
        return await c.pause(await _full_id(c, execution_id))

    _guard(lambda: _say({}, "paused") if _control(database, act) else OK)


@executions_app.command("resume")
def executions_resume(
    execution_id: ExecutionArg, database: DatabaseOpt = DEFAULT_DATABASE_URL
) -> None:
    """Resume a paused execution."""

    async def act(c: Conveyor) -> str:
        return await c.resume(await _full_id(c, execution_id))

    _guard(lambda: _say({}, "resumed") if _control(database, act) else OK)


@executions_app.command("signal")
def executions_signal(
    execution_id: ExecutionArg,
    name: Annotated[str, typer.Argument(help="signal name (a wait_for_event 'event')")],
    data: Annotated[str | None, typer.Option("--data", help="JSON payload or @FILE")] = None,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Send a signal to an execution; a wait_for_event node waiting for it resumes."""

    def body() -> int:
        payload = parse_input(data) if data is not None else None

        async def act(c: Conveyor) -> int:
            return await c.signal(await _full_id(c, execution_id), name, payload)

        out.print(f"signal {name} delivered (#{_control(database, act)})")
        return OK

    _guard(body)


@executions_app.command("retry")
def executions_retry(
    execution_id: ExecutionArg,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    wait: Annotated[bool, typer.Option("--wait", help="run it here and follow it")] = False,
) -> None:
    """Retry from the failed step: a new execution reusing every step that succeeded."""

    async def act(c: Conveyor) -> Any:
        return await c.retry(await _full_id(c, execution_id))

    _guard(lambda: _enqueued(database, _control(database, act), wait))


@executions_app.command("replay")
def executions_replay(
    execution_id: ExecutionArg,
    from_node: Annotated[str, typer.Option("--from", help="node to run again (and below)")],
    input: InputOpt = None,
    current: Annotated[
        bool,
        typer.Option("--current/--pinned", help="replay on the latest version or the pinned one"),
    ] = False,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    wait: Annotated[bool, typer.Option("--wait", help="run it here and follow it")] = False,
) -> None:
    """Replay from a node: reuse the outputs above it, run it and everything below again."""

    def body() -> int:
        payload = parse_input(input) if input is not None else None

        async def act(c: Conveyor) -> Any:
            return await c.replay(
                await _full_id(c, execution_id), from_node, input=payload, current=current
            )

        return _enqueued(database, _control(database, act), wait)

    _guard(body)


def _enqueued(database: str, enqueued: Any, wait: bool) -> int:
    if not wait:
        print(enqueued.execution_id)
        return OK
    return _follow(database, enqueued.execution_id)


def _follow(database: str, execution_id: str, registry: Any = None) -> int:
    """Run an enqueued execution in this process with live progress (``--wait``)."""

    async def go() -> dict[str, Any]:
        conveyor = await Conveyor.open(database, registry or _registry([], False))
        try:
            return await _watch(conveyor, execution_id)
        finally:
            conveyor.close()

    return _report(_async(go()))


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOpt = DEFAULT_DATABASE_URL) -> None:
    """Apply the database migrations (every command also does this when needed)."""

    def body() -> int:
        db = Database(database)
        try:
            db.migrate()
        finally:
            db.dispose()
        out.print(f"database at {db.url.render_as_string()} is up to date")
        return OK

    _guard(body)
