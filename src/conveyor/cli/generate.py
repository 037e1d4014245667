"""``conveyor generate``: draft a workflow definition with the configured LLM, show its
graph and YAML, and save it only when asked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli.base import (
    DEFAULT_DATABASE_URL,
    DatabaseOpt,
    PluginOpt,
    PrivateOpt,
    err,
    guard,
    out,
    registry_for,
    run_async,
    with_conveyor,
)
from conveyor.cli.exits import BAD_INPUT, OK
from conveyor.errors import InputError

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.generate import Draft, GeneratorSettings
    from conveyor.settings import Settings


def generate(
    description: Annotated[str, typer.Argument(help="what the workflow should do")],
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="also write the YAML to this file")
    ] = None,
    save: Annotated[
        bool, typer.Option("--save", help="save a valid draft as a new version")
    ] = False,
    repairs: Annotated[
        int, typer.Option(min=0, max=10, help="times the validator's problems go back")
    ] = 2,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    plugin: PluginOpt = [],  # noqa: B006
    allow_private_network: PrivateOpt = False,
) -> None:
    """Draft a definition from a description with the LLM of CONVEYOR_LLM_BASE_URL,
    CONVEYOR_LLM_MODEL and CONVEYOR_LLM_API_KEY (exit 2 when it is still invalid)."""

    def body() -> int:
        from conveyor.generate import generate as draft_for
        from conveyor.settings import Settings

        settings = Settings()
        registry = registry_for(plugin, allow_private_network)
        draft = run_async(
            draft_for(
                description,
                registry,
                generator_settings(settings),
                repairs=repairs,
                network=registry.network,  # the steps' policy: private flag and allowlist
            )
        )
        show(draft)
        if output is not None:
            output.write_text(draft.yaml, encoding="utf-8")
        if not draft.valid:
            for problem in draft.problems:
                err.print(f"invalid definition: {problem}", style="red", markup=False)
            err.print(f"still invalid after {draft.attempts} attempts; not saved")
            return BAD_INPUT
        if save:
            data = draft.data or {}

            async def apply(conveyor: Conveyor) -> Any:
                return await conveyor.apply(data)

            ref = with_conveyor(database, apply)
            out.print(f"saved {ref.workflow_name} version {ref.version}")
        return OK

    guard(body)


def generator_settings(settings: Settings) -> GeneratorSettings:
    from conveyor.generate import NOT_CONFIGURED, GeneratorSettings

    found = GeneratorSettings.of(settings)
    if found is None:
        raise InputError(NOT_CONFIGURED)
    return found


def show(draft: Draft) -> None:
    """The graph (each node, its type and what it needs), then the YAML."""
    from rich.table import Table

    nodes = (draft.data or {}).get("nodes")
    if isinstance(nodes, list):
        table = Table(title="graph", title_justify="left")
        for column in ("node", "type", "needs"):
            table.add_column(column)
        for node in nodes:
            if isinstance(node, dict):
                needs = node.get("needs") or []
                needs = [needs] if isinstance(needs, str) else needs
                table.add_row(
                    str(node.get("id")), str(node.get("type")), ", ".join(map(str, needs))
                )
        out.print(table)
    out.print(draft.yaml, markup=False, highlight=False, soft_wrap=True)
