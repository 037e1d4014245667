"""``conveyor users ...``, ``conveyor keys ...`` and ``conveyor workspaces ...``: accounts
and workspace settings from the command line."""

from __future__ import annotations

import getpass
import os
from enum import StrEnum
from typing import Annotated

import typer

from conveyor.cli.base import (
    DEFAULT_DATABASE_URL,
    HELP_FORMAT,
    DatabaseOpt,
    guard,
    open_conveyor,
    out,
    run_async,
)
from conveyor.cli.exits import OK
from conveyor.errors import InputError, NotFound

users_app = typer.Typer(no_args_is_help=True, help="Manage users.", **HELP_FORMAT)
keys_app = typer.Typer(no_args_is_help=True, help="Manage API keys.", **HELP_FORMAT)
workspaces_app = typer.Typer(no_args_is_help=True, help="Manage workspace settings.", **HELP_FORMAT)
# conveyor.store's values, repeated so that loading the command line does not load the
# store; tests/unit/test_cli.py keeps them equal.
DEFAULT_WORKSPACE = "default"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="workspace name")]


def _password() -> str:
    from_env = os.environ.get("CONVEYOR_NEW_PASSWORD")
    if from_env:
        return from_env
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise InputError("the passwords differ")
    return first


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="the user's email (their login)")],
    admin: Annotated[bool, typer.Option("--admin", help="instance administrator")] = False,
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    role: Annotated[Role, typer.Option(help="role in the workspace")] = Role.OWNER,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Create a user (password prompted, or CONVEYOR_NEW_PASSWORD) with a role in a
    workspace (created if new)."""

    def body() -> int:
        from conveyor.store import accounts
        from conveyor.store.workflows import workspace_id

        password = _password()

        async def go() -> str:
            conveyor = await open_conveyor(database)
            try:
                store = conveyor.store
                now = store.clock.now()
                user_id = await store.write(
                    accounts.create_user, email, password, now, is_admin=admin
                )
                ws = await store.write(workspace_id, workspace, now)
                await store.write(accounts.set_role, user_id, ws, accounts.Role(role), now)
                return user_id
            finally:
                conveyor.close()

        user_id = run_async(go())
        out.print(
            f"created {'admin ' if admin else ''}{email} ({user_id}), "
            f"{role.value} of workspace {workspace}"
        )
        return OK

    guard(body)


@keys_app.command("create")
def keys_create(
    email: Annotated[str, typer.Argument(help="the user the key acts for")],
    name: Annotated[str, typer.Option(help="what the key is for")] = "cli",
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    role: Annotated[Role, typer.Option(help="at most the user's own role")] = Role.MEMBER,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Create an API key and print it (it is shown once, stored only hashed)."""

    def body() -> int:
        from conveyor.store import accounts

        async def go() -> str:
            conveyor = await open_conveyor(database)
            try:
                store = conveyor.store
                ws = await store.read(accounts.find_workspace, workspace)
                if ws is None:
                    raise NotFound(f"workspace '{workspace}' not found")

                def user_id_of(conn: object) -> str | None:
                    from sqlalchemy import Connection, select

                    from conveyor.store.tables import users

                    assert isinstance(conn, Connection)
                    found = conn.execute(
                        select(users.c.id).where(users.c.email == email.strip().lower())
                    ).scalar()
                    return str(found) if found is not None else None

                user_id = await store.read(user_id_of)
                if user_id is None:
                    raise NotFound(f"no user with email {email}")
                key, _row = await store.write(
                    accounts.create_api_key,
                    ws["id"],
                    user_id,
                    name,
                    accounts.Role(role),
                    store.clock.now(),
                )
                return key
            finally:
                conveyor.close()

        print(run_async(go()))
        return OK

    guard(body)


@workspaces_app.command("set")
def workspaces_set(
    max_running_per_user: Annotated[
        int,
        typer.Option(
            "--max-running-per-user",
            min=0,
            help="at most this many running executions per user; 0: no limit",
        ),
    ],
    workspace: WorkspaceOpt = DEFAULT_WORKSPACE,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Change a workspace's settings (for executions enqueued from now on)."""

    def body() -> int:
        from conveyor.store import accounts

        limit = max_running_per_user or None

        async def go() -> None:
            conveyor = await open_conveyor(database)
            try:
                ws = await conveyor.store.read(accounts.find_workspace, workspace)
                if ws is None:
                    raise NotFound(f"workspace '{workspace}' not found")
                await conveyor.store.write(accounts.set_max_running_per_user, ws["id"], limit)
            finally:
                conveyor.close()

        run_async(go())
        out.print(
            f"workspace {workspace}: at most {limit} running executions per user"
            if limit
            else f"workspace {workspace}: no limit on running executions per user"
        )
        return OK

    guard(body)
