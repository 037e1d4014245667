"""``conveyor inbox`` and ``conveyor tasks ...``: the notifications and tasks that notify
and task.create steps made in the default workspace, marked read or done (the same store
queries as the API and the dashboard, store/inbox.py). Without ``--user`` the CLI sees
every notification, as the operator does; with it, what that user's inbox shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli.base import (
    DEFAULT_DATABASE_URL,
    HELP_FORMAT,
    DatabaseOpt,
    JsonOpt,
    as_json,
    guard,
    out,
    with_conveyor,
)
from conveyor.cli.exits import OK

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.store.inbox import Reader

inbox_app = typer.Typer(
    invoke_without_command=True,
    help="Notifications: list them (newest first), mark them read.",
    **HELP_FORMAT,
)
tasks_app = typer.Typer(
    no_args_is_help=True, help="Tasks for people: list, mark done, reopen.", **HELP_FORMAT
)
UserOpt = Annotated[
    str | None,
    typer.Option("--user", "-u", metavar="EMAIL", help="as this user sees it (and acting as)"),
]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=200, help="at most this many")]


def _when(value: Any) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


async def _reader(conveyor: Conveyor, email: str | None) -> Reader | None:
    from conveyor.store import inbox

    return None if email is None else await conveyor.store.read(inbox.reader_for, email)


@inbox_app.callback()
def inbox_list(
    ctx: typer.Context,
    unread: Annotated[bool, typer.Option("--unread", help="only unread ones")] = False,
    user: UserOpt = None,
    limit: LimitOpt = 50,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    json_output: JsonOpt = False,
) -> None:
    """List notifications, newest first (`conveyor inbox read ID` marks one read)."""
    if ctx.invoked_subcommand is not None:
        return

    def body() -> int:
        from conveyor.store import inbox

        async def go(conveyor: Conveyor) -> list[dict[str, Any]]:
            who = await _reader(conveyor, user)
            return await conveyor.store.read(
                inbox.list_notifications, conveyor.workspace_id, who, unread=unread, limit=limit
            )

        found = with_conveyor(database, go)
        if json_output:
            print(as_json(found))
            return OK
        from rich.table import Table

        from conveyor.cli.display import id_column

        table = Table()
        id_column(table, [n["id"] for n in found])
        for header in ("read", "title", "message", "workflow", "execution", "created (UTC)"):
            table.add_column(header, overflow="fold")
        for n in found:
            table.add_row(
                n["id"],
                "no" if n["read_at"] is None else "yes",
                n["title"],
                n["message"],
                n["workflow_name"] or "-",
                n["execution_id"] or "-",
                _when(n["created_at"]),
            )
        out.print(table)
        return OK

    guard(body)


@inbox_app.command("read")
def inbox_read(
    notification_ids: Annotated[list[str], typer.Argument(help="notification ids")],
    user: UserOpt = None,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Mark notifications read."""

    def body() -> int:
        from conveyor.store import inbox

        async def go(conveyor: Conveyor) -> None:
            who = await _reader(conveyor, user)
            for notification_id in notification_ids:
                await conveyor.store.write(
                    inbox.mark_read,
                    conveyor.workspace_id,
                    who,
                    notification_id,
                    conveyor.store.clock.now(),
                )

        with_conveyor(database, go)
        out.print(f"marked {len(notification_ids)} read")
        return OK

    guard(body)


@inbox_app.command("read-all")
def inbox_read_all(user: UserOpt = None, database: DatabaseOpt = DEFAULT_DATABASE_URL) -> None:
    """Mark every unread notification read (with --user: every one that user sees)."""

    def body() -> int:
        from conveyor.store import inbox

        async def go(conveyor: Conveyor) -> int:
            who = await _reader(conveyor, user)
            store = conveyor.store
            return await store.write(
                inbox.mark_all_read, conveyor.workspace_id, who, store.clock.now()
            )

        marked = with_conveyor(database, go)
        out.print(f"marked {marked} read")
        return OK

    guard(body)


@tasks_app.command("list")
def tasks_list(
    status: Annotated[str, typer.Option(help="open, done or all")] = "open",
    assignee: Annotated[
        str | None, typer.Option(metavar="EMAIL", help="only tasks assigned to this email")
    ] = None,
    mine: Annotated[bool, typer.Option("--mine", help="only those assigned to --user")] = False,
    user: UserOpt = None,
    limit: LimitOpt = 50,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    json_output: JsonOpt = False,
) -> None:
    """List tasks, newest first."""

    def body() -> int:
        from conveyor.errors import InputError
        from conveyor.store import inbox

        if mine and user is None:
            raise InputError("--mine needs --user EMAIL")
        wanted = inbox.parse_status(status)

        async def go(conveyor: Conveyor) -> list[dict[str, Any]]:
            who = await _reader(conveyor, user) if mine else None
            return await conveyor.store.read(
                inbox.list_tasks,
                conveyor.workspace_id,
                status=wanted,
                assignee=who or assignee,
                limit=limit,
            )

        found = with_conveyor(database, go)
        if json_output:
            print(as_json(found))
            return OK
        from rich.table import Table

        from conveyor.cli.display import id_column

        table = Table()
        id_column(table, [t["id"] for t in found])
        for header in ("status", "title", "assignee", "due (UTC)", "workflow", "execution"):
            table.add_column(header, overflow="fold")
        for t in found:
            table.add_row(
                t["id"],
                t["status"],
                t["title"],
                t["assignee_email"] or t["assignee_id"] or "-",
                _when(t["due_at"]),
                t["workflow_name"] or "-",
                t["execution_id"] or "-",
            )
        out.print(table)
        return OK

    guard(body)


def _set(database: str, task_id: str, status: str, user: str | None) -> None:
    def body() -> int:
        from conveyor.store import inbox

        async def go(conveyor: Conveyor) -> dict[str, Any]:
            who = await _reader(conveyor, user)
            store = conveyor.store
            return await store.write(
                inbox.set_task_status,
                conveyor.workspace_id,
                task_id,
                "done" if status == "done" else "open",
                who.user_id if who else None,
                store.clock.now(),
            )

        task = with_conveyor(database, go)
        out.print(f"task {task['id']} is {task['status']}")
        return OK

    guard(body)


@tasks_app.command("done")
def tasks_done(
    task_id: Annotated[str, typer.Argument(help="task id (see `conveyor tasks list`)")],
    user: UserOpt = None,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Mark a task done (by --user, if given)."""
    _set(database, task_id, "done", user)


@tasks_app.command("reopen")
def tasks_reopen(
    task_id: Annotated[str, typer.Argument(help="task id")],
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Open a done task again."""
    _set(database, task_id, "open", None)
