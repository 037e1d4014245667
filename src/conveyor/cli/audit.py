"""``conveyor audit list``, and the audit entry of every CLI command that changes something
(channel ``cli``, the actor being the local OS user): ``guard`` calls ``record_command``
after a command's body returned, so no command can be left out (tests/unit/test_cli.py
holds every command to ``ACTIONS`` or ``READ_ONLY``)."""

from __future__ import annotations

import getpass
import importlib
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from conveyor.cli.base import (
    DEFAULT_DATABASE_URL,
    HELP_FORMAT,
    DatabaseOpt,
    JsonOpt,
    as_json,
    guard,
    out,
)
from conveyor.cli.exits import OK

audit_app = typer.Typer(no_args_is_help=True, help="Read the audit log.", **HELP_FORMAT)
DEFAULT_WORKSPACE = "default"
# Each command that changes the database, and the action it records (the API's words).
ACTIONS = {
    "execute": "workflow.execute",
    "run": "workflow.execute",
    "generate": "workflow.create",  # with --save only
    "workflows apply": "workflow.apply",
    "executions cancel": "execution.cancel",
    "executions pause": "execution.pause",
    "executions resume": "execution.resume",
    "executions signal": "execution.signal",
    "executions retry": "execution.retry",
    "executions replay": "execution.replay",
    "schedules enable": "schedule.enable",
    "schedules disable": "schedule.disable",
    "schedules delete": "schedule.delete",
    "schedules backfill": "schedule.backfill",
    "users create": "user.create",
    "keys create": "api_key.create",
    "workspaces set": "workspace.update",
    "webhooks create": "webhook.create",
    "webhooks enable": "webhook.enable",
    "webhooks disable": "webhook.disable",
    "webhooks delete": "webhook.delete",
    "webhooks secret": "webhook.rotate_secret",
    "credentials set": "credential.set",
    "credentials delete": "credential.delete",
    "credentials rotate-key": "credential.rotate_key",
    "inbox read": "notification.read",
    "inbox read-all": "notification.read_all",
    "tasks done": "task.done",
    "tasks reopen": "task.reopen",
}
# Commands that change nothing in the database, or are processes whose own work is
# recorded elsewhere (a server's requests, a worker's executions); db upgrade changes the
# schema, which the migrations record.
READ_ONLY = frozenset(
    {
        "validate",
        "schema",
        "worker",
        "server",
        "db upgrade",
        "executions list",
        "executions show",
        "workflows list",
        "schedules list",
        "schedules show",
        "webhooks list",
        "webhooks show",
        "webhooks deliveries",
        "credentials list",
        "credentials types",
        "nodes list",
        "nodes show",
        "nodes docs",
        "tasks list",
        "audit list",
    }
)
# Parameters kept in an entry's details: never the database URL (it may hold a password),
# inputs, signal data or credential fields.
_TARGETS = ("execution_id", "schedule_id", "webhook", "task_id", "name", "email", "workflow")
_KEPT = frozenset(
    {
        "workflow",
        "version",
        "priority",
        "from_node",
        "current",
        "dry_run",
        "start",
        "end",
        "role",
        "admin",
        "max_running_per_user",
        "kind",
        "mode",
        "file",
        "notification_ids",
        "user",
        "workspace",
    }
)


def _current_context() -> Any:
    """The running command's context: Typer 0.29 runs on its own copy of Click (private,
    so looked up by name), older ones on Click itself."""
    for module in ("typer._click.globals", "click.globals"):
        try:
            found = importlib.import_module(module).get_current_context(silent=True)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


def command_path(ctx: Any) -> str:
    path = str(ctx.command_path)
    return path.split(" ", 1)[1] if " " in path else ""


def record_command() -> None:
    """The entry of the command being run, when it is one that changes something."""
    ctx = _current_context()
    if ctx is None:
        return
    action = ACTIONS.get(command_path(ctx))
    params = dict(ctx.params)
    if action is None or (command_path(ctx) == "generate" and not params.get("save")):
        return
    from conveyor.cli.base import run_async

    run_async(_record(action, params))


async def _record(action: str, params: dict[str, Any]) -> None:
    from conveyor import __version__
    from conveyor.store import accounts, audit
    from conveyor.store.database import Database

    database = Database(str(params.get("database") or DEFAULT_DATABASE_URL))
    try:
        target = next((t for t in _TARGETS if params.get(t)), None)
        details = {k: _plain(v) for k, v in params.items() if k in _KEPT and k != target}
        with database.write() as conn:
            ws = accounts.find_workspace(conn, str(params.get("workspace") or DEFAULT_WORKSPACE))
            entry = audit.Entry(
                workspace_id=ws["id"] if ws else None,
                actor=audit.Actor(f"cli:{getpass.getuser()}"),
                action=action,
                source=audit.Source("cli", user_agent=f"conveyor-cli/{__version__}"),
                target_type=action.split(".")[0] if target else None,
                target_id=str(params[target]) if target else None,
                details={k: v for k, v in details.items() if v not in (None, [], False)},
            )
            audit.record(conn, entry, datetime.now(UTC))
    finally:
        database.dispose()


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return value if isinstance(value, bool | int | float | str) or value is None else str(value)


@audit_app.command("list")
def audit_list(
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    workspace: Annotated[
        str, typer.Option("--workspace", "-w", help="workspace name")
    ] = DEFAULT_WORKSPACE,
    action: Annotated[str | None, typer.Option(help="exact, or a prefix: workflow.*")] = None,
    actor: Annotated[str | None, typer.Option(help="email, user or key id, cli:NAME")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    json_output: JsonOpt = False,
) -> None:
    """The workspace's audit log, newest first."""

    def body() -> int:
        rows = _entries(database, workspace, action, actor, limit)
        if json_output:
            print(as_json(rows))
            return OK
        out.print(_table(rows))
        return OK

    guard(body)


def _entries(
    database: str, workspace: str, action: str | None, actor: str | None, limit: int
) -> list[dict[str, Any]]:
    from conveyor.errors import NotFound
    from conveyor.store import accounts, audit
    from conveyor.store.database import Database

    db = Database(database)
    try:
        db.migrate()
        with db.read() as conn:
            ws = accounts.find_workspace(conn, workspace)
            if ws is None:
                raise NotFound(f"workspace '{workspace}' not found")
            f = audit.AuditFilter(action=action, actor=actor, limit=limit)
            return audit.list_entries(conn, ws["id"], f)[:limit]
    finally:
        db.dispose()


def _table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("AT", "ACTOR", "ACTION", "TARGET", "SOURCE"):
        table.add_column(column)
    for r in rows:
        target = f"{r['target']['type']} {r['target']['id']}" if r["target"]["id"] else ""
        source = r["source"]["channel"] + (f" {r['source']['ip']}" if r["source"]["ip"] else "")
        table.add_row(
            r["at"].strftime("%Y-%m-%d %H:%M:%S"),
            r["actor"]["display"],
            r["action"],
            target,
            source,
        )
    return table
