"""``conveyor nodes ...``: the node types this install knows (built-ins, entry points,
``--plugin`` modules), one node type's config and example, and the generated reference."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli.base import HELP_FORMAT, JsonOpt, PluginOpt, as_json, guard, out, registry_for
from conveyor.cli.exits import OK
from conveyor.errors import InputError

nodes_app = typer.Typer(
    no_args_is_help=True,
    help="Node types: list them, show one's config and example, write the reference.",
    **HELP_FORMAT,
)


@nodes_app.command("list")
def nodes_list(plugins: PluginOpt = [], json_output: JsonOpt = False) -> None:  # noqa: B006
    """List every node type: name, category, what it does."""

    def body() -> int:
        from conveyor.nodes.catalog import catalog

        entries = catalog(registry_for(plugins, False))
        if json_output:
            print(as_json(entries))
            return OK
        from rich.table import Table

        table = Table()
        for header in ("node type", "category", "title", "description"):
            table.add_column(header, overflow="fold")
        for e in entries:
            table.add_row(e["name"], e["category"], e["title"], e["description"])
        out.print(table)
        return OK

    guard(body)


@nodes_app.command("show")
def nodes_show(
    name: Annotated[str, typer.Argument(help="a node type, e.g. http.request")],
    plugins: PluginOpt = [],  # noqa: B006
    json_output: JsonOpt = False,
) -> None:
    """A node type's config fields (type, default, template or not) and an example."""

    def body() -> int:
        from conveyor.nodes.catalog import describe
        from conveyor.nodes.reference import show

        registry = registry_for(plugins, False)
        node_type = registry.get(name)
        if node_type is None:
            hint = registry.suggest(name)
            also = f" (did you mean '{hint}'?)" if hint else ""
            raise InputError(f"no node type '{name}'{also}; see `conveyor nodes list`")
        if json_output:
            print(as_json(describe(node_type)))
            return OK
        print(show(registry, name), end="")
        return OK

    guard(body)


@nodes_app.command("docs")
def nodes_docs(
    write: Annotated[
        Path | None,
        typer.Option("--write", metavar="FILE", help="write here (docs/nodes.md) instead"),
    ] = None,
    plugins: PluginOpt = [],  # noqa: B006
) -> None:
    """Print the node reference of the built-in node types (and --plugin modules' ones);
    `--write docs/nodes.md` regenerates the committed reference."""

    def body() -> int:
        import os
        import sys

        from conveyor.nodes.builtin import build_registry
        from conveyor.nodes.reference import reference

        if plugins and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        text = reference(build_registry(plugins=plugins, entry_points=False))
        if write is None:
            print(text, end="")
        else:
            write.write_text(text, encoding="utf-8")
            out.print(f"wrote {write}")
        return OK

    guard(body)
