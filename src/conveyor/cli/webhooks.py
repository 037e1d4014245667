"""``conveyor webhooks``: list, show, create, enable/disable, delete, secret, deliveries.

Works on the database directly, like ``conveyor workflows``. A webhook's URL is shown on
``--base-url`` (default: the server's ``CONVEYOR_HOST``/``CONVEYOR_PORT``); a secret is
printed once, when it is made, and never again.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from conveyor.cli.base import (
    DEFAULT_DATABASE_URL,
    HELP_FORMAT,
    DatabaseOpt,
    JsonOpt,
    as_json,
    err,
    guard,
    out,
    with_conveyor,
)
from conveyor.cli.exits import OK
from conveyor.errors import InputError

webhooks_app = typer.Typer(no_args_is_help=True, help="Manage webhooks.", **HELP_FORMAT)
KIND = "webhook"
IdArg = Annotated[str, typer.Argument(help="webhook id")]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="the server's public URL, for the webhook URLs shown"),
]


def _base(base_url: str | None) -> str:
    if base_url:
        return base_url.rstrip("/")
    from conveyor.settings import Settings

    settings = Settings()
    return f"http://{settings.host}:{settings.port}"


def _view(row: dict[str, Any], base_url: str | None) -> dict[str, Any]:
    return {
        "id": row["id"],
        "key": row["key"],
        "workflow_id": row["workflow_id"],
        "url": f"{_base(base_url)}/hooks/{row['token']}",
        "auth_mode": row["spec"].get("auth", {}).get("mode", "signature"),
        "enabled": row["enabled"],
        "source": row["source"],
        "last_delivery_at": row["last_delivery_at"],
        "spec": row["spec"],
    }


def _print_rows(rows: list[dict[str, Any]], json_output: bool) -> None:
    if json_output:
        print(as_json(rows))
        return
    from rich.table import Table

    from conveyor.cli.display import id_column

    table = Table()
    id_column(table, [row["id"] for row in rows])
    for header in ("key", "auth", "enabled", "source", "url"):
        table.add_column(header, overflow="fold")
    for row in rows:
        enabled = "yes" if row["enabled"] else "no"
        table.add_row(row["id"], row["key"], row["auth_mode"], enabled, row["source"], row["url"])
    out.print(table)


@webhooks_app.command("list")
def webhooks_list(
    workflow: Annotated[
        str | None, typer.Argument(help="workflow name or id (default: every workflow)")
    ] = None,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    base_url: BaseUrlOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """List the webhooks of a workflow (or of every workflow) with their URLs."""
    from conveyor.store import triggers, workflows

    async def go(conveyor: Any) -> list[dict[str, Any]]:
        if workflow is None:
            return list(await conveyor.store.read(triggers.list_webhooks, conveyor.workspace_id))
        found = await conveyor.store.read(workflows.get_workflow, conveyor.workspace_id, workflow)
        return list(
            await conveyor.store.read(
                triggers.list_for_workflow, KIND, conveyor.workspace_id, found["id"]
            )
        )

    def body() -> int:
        rows = with_conveyor(database, go)
        _print_rows([_view(r, base_url) for r in rows], json_output)
        return OK

    guard(body)


@webhooks_app.command("show")
def webhooks_show(
    webhook: IdArg, database: DatabaseOpt = DEFAULT_DATABASE_URL, base_url: BaseUrlOpt = None
) -> None:
    """Show one webhook (never its secret)."""
    from conveyor.store import triggers

    async def go(conveyor: Any) -> dict[str, Any]:
        return dict(await conveyor.store.read(triggers.get, KIND, conveyor.workspace_id, webhook))

    def body() -> int:
        print(as_json(_view(with_conveyor(database, go), base_url)))
        return OK

    guard(body)


@webhooks_app.command("create")
def webhooks_create(
    workflow: Annotated[str, typer.Argument(help="workflow name or id")],
    key: Annotated[str, typer.Option("--id", help="the webhook's id in its workflow")],
    auth: Annotated[
        str, typer.Option("--auth", help="none, header, basic or signature")
    ] = "signature",
    scheme: Annotated[
        str, typer.Option("--scheme", help="standard, github, stripe, slack (signature)")
    ] = "standard",
    username: Annotated[str | None, typer.Option("--username", help="for basic")] = None,
    mode: Annotated[str, typer.Option("--response", help="async, sync or stream")] = "async",
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    base_url: BaseUrlOpt = None,
) -> None:
    """Create a webhook; prints its URL and, once, its secret."""
    from conveyor.store import triggers, workflows

    def body() -> int:
        raw: dict[str, Any] = {"id": key, "auth": {"mode": auth, "scheme": scheme}}
        if username:
            raw["auth"]["username"] = username
        raw["response"] = {"mode": mode}
        spec = _spec(raw)

        async def go(conveyor: Any) -> tuple[Any, dict[str, Any]]:
            store = conveyor.store
            found = await store.read(workflows.get_workflow, conveyor.workspace_id, workflow)
            change = await store.write(
                triggers.create,
                KIND,
                conveyor.workspace_id,
                found["id"],
                spec,
                store.clock.now(),
                conveyor.keyring.encrypt,
            )
            return change, await store.read(triggers.get, KIND, conveyor.workspace_id, change.id)

        change, row = with_conveyor(database, go)
        view = _view(row, base_url)
        out.print(f"webhook {view['id']} created: {view['url']}")
        if change.secret:
            out.print(f"secret (shown only now): {change.secret}", markup=False)
        return OK

    guard(body)


def _spec(raw: dict[str, Any]) -> dict[str, Any]:
    """A webhook spec as stored, or InputError naming each problem."""
    from pydantic import ValidationError

    from conveyor.engine.triggers import WebhookSpec

    try:
        return WebhookSpec.model_validate(raw).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(f"invalid webhook: {problems}") from None


def _set_enabled(webhook: str, database: str, enabled: bool) -> None:
    from conveyor.store import triggers

    async def go(conveyor: Any) -> None:
        now = conveyor.store.clock.now()
        await conveyor.store.write(
            triggers.set_enabled, KIND, conveyor.workspace_id, webhook, enabled, now
        )

    def body() -> int:
        with_conveyor(database, go)
        out.print(f"webhook {webhook} {'enabled' if enabled else 'disabled'}")
        return OK

    guard(body)


@webhooks_app.command("enable")
def webhooks_enable(webhook: IdArg, database: DatabaseOpt = DEFAULT_DATABASE_URL) -> None:
    """Enable a webhook."""
    _set_enabled(webhook, database, True)


@webhooks_app.command("disable")
def webhooks_disable(webhook: IdArg, database: DatabaseOpt = DEFAULT_DATABASE_URL) -> None:
    """Disable a webhook: its URL answers 404 until it is enabled again."""
    _set_enabled(webhook, database, False)


@webhooks_app.command("delete")
def webhooks_delete(webhook: IdArg, database: DatabaseOpt = DEFAULT_DATABASE_URL) -> None:
    """Delete a webhook: its URL answers 404 from now on."""
    from conveyor.store import triggers

    async def go(conveyor: Any) -> None:
        now = conveyor.store.clock.now()
        await conveyor.store.write(triggers.delete, KIND, conveyor.workspace_id, webhook, now)

    def body() -> int:
        with_conveyor(database, go)
        out.print(f"webhook {webhook} deleted")
        return OK

    guard(body)


@webhooks_app.command("secret")
def webhooks_secret(
    webhook: IdArg,
    set_from_stdin: Annotated[
        bool, typer.Option("--set-from-stdin", help="use the secret read from stdin")
    ] = False,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Generate a new secret (printed once), or set a provider's from stdin."""
    from conveyor.store import triggers

    def body() -> int:
        given = None
        if set_from_stdin:
            given = sys.stdin.readline().strip()
            if len(given) < 8:
                raise InputError("the secret read from stdin has fewer than 8 characters")

        async def go(conveyor: Any) -> str:
            now = conveyor.store.clock.now()
            return str(
                await conveyor.store.write(
                    triggers.set_secret,
                    conveyor.workspace_id,
                    webhook,
                    given,
                    now,
                    conveyor.keyring.encrypt,
                )
            )

        secret = with_conveyor(database, go)
        if given is None:
            out.print(f"new secret (shown only now): {secret}", markup=False)
        else:
            err.print(f"secret of webhook {webhook} set")
        return OK

    guard(body)


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    webhook: IdArg,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 20,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    json_output: JsonOpt = False,
) -> None:
    """The latest requests to a webhook, newest first."""
    from conveyor.store import triggers

    async def go(conveyor: Any) -> list[dict[str, Any]]:
        return list(
            await conveyor.store.read(
                triggers.list_deliveries, conveyor.workspace_id, webhook, limit
            )
        )

    def body() -> int:
        rows = with_conveyor(database, go)
        if json_output:
            print(as_json(rows))
            return OK
        from rich.table import Table

        table = Table("received", "method", "status", "outcome", "execution", "detail")
        for r in rows:
            table.add_row(
                r["received_at"].isoformat(timespec="seconds"),
                r["method"],
                str(r["status_code"]),
                r["outcome"],
                r["execution_id"] or "",
                r["detail"] or "",
            )
        out.print(table)
        return OK

    guard(body)
