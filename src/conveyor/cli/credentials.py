"""``conveyor credentials``: list, types, set, delete, rotate-key.

Values are write-only: ``set`` takes each field as ``--field NAME=VALUE``, where a secret
field is best given as ``NAME=-`` (read from standard input, nothing in the shell's
history) or ``NAME=@path`` (read from a file); a secret field left out is asked for,
without echo, when a terminal is attached. Nothing ever prints a secret back.
"""

from __future__ import annotations

import sys
from pathlib import Path
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

credentials_app = typer.Typer(
    no_args_is_help=True,
    help="Manage credentials (secrets nodes use by name; values are never shown).",
    **HELP_FORMAT,
)
NameArg = Annotated[str, typer.Argument(help="credential name")]


@credentials_app.command("list")
def credentials_list(
    database: DatabaseOpt = DEFAULT_DATABASE_URL, json_output: JsonOpt = False
) -> None:
    """List the credentials: type, non-secret fields, where used, last updated."""

    async def go(conveyor: Any) -> list[dict[str, Any]]:
        return list(await conveyor.credentials())

    def body() -> int:
        rows = with_conveyor(database, go)
        if json_output:
            print(as_json(rows))
            return OK
        from rich.table import Table

        table = Table()
        for header in ("name", "type", "fields", "used by", "updated"):
            table.add_column(header, overflow="fold")
        for row in rows:
            fields = ", ".join(f"{k}={v}" for k, v in row["fields"].items() if v not in ("", None))
            used = ", ".join(u["workflow"] for u in row["used_by"]) or "-"
            table.add_row(row["name"], row["type"], fields, used, str(row["updated_at"])[:19])
        out.print(table)
        return OK

    guard(body)


@credentials_app.command("types")
def credentials_types() -> None:
    """The credential types and their fields (secret ones marked)."""
    from conveyor.credentials import TYPES

    for kind in TYPES.values():
        fields = ", ".join(
            f.name + ("*" if f.secret else "") + ("" if f.required else "?") for f in kind.fields
        )
        out.print(f"[bold]{kind.name}[/bold]  {kind.title}: {fields}", highlight=False)
    out.print("(* secret, write-only; ? optional)")


def _value(name: str, raw: str) -> str:
    if raw == "-":
        return sys.stdin.read().rstrip("\n")
    if raw.startswith("@"):
        try:
            return Path(raw[1:]).read_text().rstrip("\n")
        except OSError as exc:
            raise InputError(f"cannot read {name} from {raw[1:]}: {exc.strerror}") from None
    return raw


def _fields(kind_name: str, given: list[str]) -> dict[str, Any]:
    from conveyor.credentials import kind

    spec = kind(kind_name)
    data: dict[str, Any] = {}
    for item in given:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise InputError(f"--field takes NAME=VALUE, not {item!r}")
        data[name] = _value(name, raw)
    for f in spec.fields:
        if f.secret and f.required and f.name not in data and sys.stdin.isatty():
            data[f.name] = typer.prompt(f.name, hide_input=True)
    return data


@credentials_app.command("set")
def credentials_set(
    name: NameArg,
    kind: Annotated[
        str,
        typer.Option(
            "--type",
            help="bearer, basic, header, query, smtp, "
            "database, llm or webhook_secret (see `types`)",
        ),
    ],
    field: Annotated[
        list[str] | None,
        typer.Option("--field", "-f", help="NAME=VALUE; NAME=- reads stdin, NAME=@file a file"),
    ] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Create a credential, or replace every field of an existing one."""

    def body() -> int:
        data = _fields(kind, field or [])

        async def go(conveyor: Any) -> dict[str, Any]:
            return dict(
                await conveyor.set_credential(
                    name, kind, data, description=description, replace=True
                )
            )

        made = with_conveyor(database, go)
        err.print(f"credential '{made['name']}' ({made['type']}) saved", highlight=False)
        return OK

    guard(body)


@credentials_app.command("delete")
def credentials_delete(name: NameArg, database: DatabaseOpt = DEFAULT_DATABASE_URL) -> None:
    """Delete a credential (steps that name it fail with a clear error from then on)."""

    async def go(conveyor: Any) -> None:
        await conveyor.delete_credential(name)

    def body() -> int:
        with_conveyor(database, go)
        err.print(f"credential '{name}' deleted", highlight=False)
        return OK

    guard(body)


@credentials_app.command("rotate-key")
def credentials_rotate_key(database: DatabaseOpt = DEFAULT_DATABASE_URL) -> None:
    """Re-encrypt every credential and webhook secret with the current key.

    Put the new key first in CONVEYOR_SECRET_KEY and keep the old one after it
    (``new,old``), run this, then drop the old key from every process."""

    async def go(conveyor: Any) -> dict[str, int]:
        return dict(await conveyor.rotate_key())

    def body() -> int:
        counts = with_conveyor(database, go)
        err.print(
            f"re-encrypted {counts['credentials']} credential(s) and {counts['webhooks']} "
            "webhook secret(s) with the current key",
            highlight=False,
        )
        return OK

    guard(body)
