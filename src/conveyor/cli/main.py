"""The ``conveyor`` command line (Typer + Rich): top-level commands."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from conveyor.cli.accounts import keys_app, users_app, workspaces_app
from conveyor.cli.audit import audit_app
from conveyor.cli.base import (
    DEFAULT_DATABASE_URL,
    HELP_FORMAT,
    DatabaseOpt,
    InputOpt,
    PluginOpt,
    PrivateOpt,
    SchedulerOpt,
    WaitOpt,
    as_json,
    err,
    freeze_loaded,
    guard,
    limits_of,
    long_running,
    open_conveyor,
    open_waiting,
    out,
    parse_input,
    registry_for,
    run_async,
    worker_settings,
)
from conveyor.cli.credentials import credentials_app
from conveyor.cli.executions import executions_app, workflows_app
from conveyor.cli.exits import OK
from conveyor.cli.generate import generate
from conveyor.cli.inbox import inbox_app, tasks_app
from conveyor.cli.nodes import nodes_app
from conveyor.cli.schedules import schedules_app
from conveyor.cli.webhooks import webhooks_app

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Conveyor: durable workflow automation on SQLite or PostgreSQL.",
    **HELP_FORMAT,
)
db_app = typer.Typer(no_args_is_help=True, help="Manage the database.", **HELP_FORMAT)
app.add_typer(executions_app, name="executions")
app.add_typer(workflows_app, name="workflows")
app.add_typer(schedules_app, name="schedules")
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(workspaces_app, name="workspaces")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(credentials_app, name="credentials")
app.command()(generate)
app.add_typer(nodes_app, name="nodes")
app.add_typer(inbox_app, name="inbox")
app.add_typer(tasks_app, name="tasks")
app.add_typer(audit_app, name="audit")


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        print(f"conveyor {version('conveyor')}")
        raise typer.Exit(OK)


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            expose_value=False,
            callback=_print_version,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    pass


def main() -> None:
    app()


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="workflow definition (YAML or JSON)")],
    input: InputOpt = None,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    plugin: PluginOpt = [],  # noqa: B006
    allow_private_network: PrivateOpt = False,
) -> None:
    """Run a workflow file once, in this process, with live progress.

    Exit 0 on success, 1 when the execution did not succeed, 2 for bad input, 130 on
    Ctrl-C and 143 on SIGTERM (both record the execution as cancelled). The result is
    printed as JSON on stdout; progress and the summary go to stderr."""

    def body() -> int:
        from conveyor.engine.definition import load_definition_file

        data = load_definition_file(file)
        payload = parse_input(input)
        registry = registry_for(plugin, allow_private_network)
        from conveyor.cli.follow import foreground

        return foreground(_run(data, payload, database, registry))

    guard(body)


async def _run(data: dict[str, Any], payload: Any, database: str, registry: Any) -> int:
    from conveyor.cli.follow import report, watch

    conveyor = await open_conveyor(database, registry=registry)
    try:
        conveyor.validate(data)
        ref = await conveyor.apply(data)
        enqueued = await conveyor.execute(ref.workflow_id, payload)
        detail = await watch(conveyor, enqueued.execution_id)
    finally:
        conveyor.close()
    return report(detail)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="workflow definition (YAML or JSON)")],
    plugin: PluginOpt = [],  # noqa: B006
) -> None:
    """Check a definition without running it (exit 2 listing every problem)."""

    def body() -> int:
        from conveyor.engine.definition import load_definition_file
        from conveyor.engine.validation import validate as check
        from conveyor.settings import Settings

        data = load_definition_file(file)
        limits_of(Settings()).check_definition(data)
        registry = registry_for(plugin, False)
        definition = check(data, registry)
        out.print(
            f"ok: {definition.name} ({len(definition.nodes)} nodes, "
            f"{len(definition.all_edges())} edges)"
        )
        return OK

    guard(body)


@app.command()
def schema() -> None:
    """Print the JSON Schema of workflow definitions."""
    from conveyor.engine.definition import definition_schema

    print(as_json(definition_schema()))


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
    """Enqueue an execution of a stored workflow and print its id.

    With --wait, run it in this process with live progress (exit codes as for run)."""

    def body() -> int:
        payload = parse_input(input)

        async def go() -> str:
            conveyor = await open_conveyor(database)
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

        execution_id = run_async(go())
        if wait:
            from conveyor.cli.follow import follow

            return follow(database, execution_id, registry_for(plugin, allow_private_network))
        print(execution_id)
        return OK

    guard(body)


@app.command()
def worker(
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    concurrency: Annotated[int, typer.Option(min=1, max=10_000)] = 8,
    plugin: PluginOpt = [],  # noqa: B006
    allow_private_network: PrivateOpt = False,
    scheduler: SchedulerOpt = True,
    wait_for_database: WaitOpt = 60.0,
) -> None:
    """Run a worker: claim queued executions and run them until SIGTERM or Ctrl-C; it also
    fires due schedules unless --no-scheduler.

    One line on stderr when it starts (database, concurrency, worker id) and one when it
    stops (executions finished, executions released to other workers)."""

    def body() -> int:
        from datetime import timedelta

        from conveyor.cli.worker import serve
        from conveyor.settings import Settings

        _configure_logging()
        long_running()
        settings = Settings()
        registry = registry_for(plugin, allow_private_network)
        poll = timedelta(seconds=settings.scheduler_poll_seconds) if scheduler else None
        settings_ = worker_settings(settings, concurrency)
        freeze_loaded()
        run_async(serve(database, registry, settings_, poll, wait_for_database))
        return OK

    guard(body)


def _configure_logging() -> None:
    from conveyor.redaction import install_log_filter

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _arm_failpoints()
    # Each outbound request's URL at INFO is noise (and a query credential's place).
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    install_log_filter()


def _arm_failpoints() -> None:
    from conveyor import failpoints
    from conveyor.settings import Settings

    spec = Settings().test_failpoints
    if spec:
        armed = failpoints.arm(spec)
        logging.getLogger(__name__).warning(
            "TEST FAILPOINTS ARMED (CONVEYOR_TEST_FAILPOINTS): %s", ", ".join(armed)
        )


@db_app.command("upgrade")
def db_upgrade(database: DatabaseOpt = DEFAULT_DATABASE_URL) -> None:
    """Apply the database migrations (every command also does this when needed)."""

    def body() -> int:
        from conveyor.store import Database

        db = Database(database)
        try:
            db.migrate()
        finally:
            db.dispose()
        out.print(f"database at {db.url.render_as_string()} is up to date")
        return OK

    guard(body)


@app.command()
def server(
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    concurrency: Annotated[
        int, typer.Option(min=0, max=10_000, help="embedded worker slots (0: none)")
    ] = 8,
    plugin: PluginOpt = [],  # noqa: B006
    allow_private_network: PrivateOpt = False,
    scheduler: SchedulerOpt = True,
    wait_for_database: WaitOpt = 60.0,
) -> None:
    """Serve the REST API (and dashboard) with an embedded worker, the scheduler (unless
    --no-scheduler) and housekeeping."""

    def body() -> int:
        import uvicorn

        from conveyor.server import build, first_start
        from conveyor.settings import Settings

        settings = Settings().model_copy(update={"scheduler": scheduler})
        _configure_logging()
        long_running()
        registry = registry_for(plugin, allow_private_network)
        conveyor = run_async(open_waiting(database, registry, wait_for_database))
        worker = worker_settings(settings, concurrency) if concurrency else None
        address, number = host or settings.host, port or settings.port
        try:
            link = run_async(first_start(conveyor, settings, address, number))
            if link is not None:
                err.print(
                    f"Dashboard: open {link} to sign in (a one-time link; "
                    "restart the server for a new one)",
                    markup=False,
                    highlight=False,
                    soft_wrap=True,
                )
            app = build(conveyor, settings, worker)
            freeze_loaded()
            uvicorn.run(
                app,
                host=address,
                port=number,
                log_level="info",
            )
        finally:
            conveyor.close()
        return OK

    guard(body)
