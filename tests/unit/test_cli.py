"""The command line's own surface: what loading it costs, its help text and --version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from conveyor.cli import accounts, audit, base
from conveyor.cli.main import app
from conveyor.settings import DEFAULT_DATABASE_URL
from conveyor.store.accounts import Role
from conveyor.store.workflows import DEFAULT_WORKSPACE

# What ``--help`` must not wait for: each is imported by the command that needs it.
HEAVY = (
    "sqlalchemy",
    "fastapi",
    "pydantic",
    "yaml",
    "jinja2",
    "asyncio",
    "importlib.metadata",
    "rich.table",
    "rich.live",
    "conveyor.app",
    "conveyor.store",
    "conveyor.worker",
    "conveyor.engine",
    "conveyor.settings",
    "conveyor.nodes",
)


def test_loading_the_command_line_imports_no_heavy_module() -> None:
    code = f"import sys, conveyor.cli.main; print(*(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    assert loaded == []


def test_values_repeated_to_stay_light_agree_with_their_source() -> None:
    assert base.DEFAULT_DATABASE_URL == DEFAULT_DATABASE_URL
    assert accounts.DEFAULT_WORKSPACE == DEFAULT_WORKSPACE
    assert audit.DEFAULT_WORKSPACE == DEFAULT_WORKSPACE


def test_every_command_is_audited_or_declared_read_only() -> None:
    """A new command fails here until it is named in cli/audit.py's ACTIONS (it changes
    something: guard writes its entry) or READ_ONLY."""
    import click

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    found: set[str] = set()

    def walk(command: Any, path: list[str]) -> None:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])
        else:
            found.add(" ".join(path))

    walk(root, [])
    assert not set(audit.ACTIONS) & audit.READ_ONLY
    assert found == set(audit.ACTIONS) | audit.READ_ONLY
    assert [r.value for r in accounts.Role] == [r.value for r in Role]


def test_version_is_the_installed_one() -> None:
    done = CliRunner().invoke(app, ["--version"])
    assert done.exit_code == 0
    assert done.output == f"conveyor {version('conveyor')}\n"


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


COMMANDS = _commands(typer.main.get_group(app))


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) or "conveyor" for c in COMMANDS])
def test_boolean_flags_show_no_value_in_help(command: tuple[str, ...]) -> None:
    done = CliRunner().invoke(app, [*command, "--help"], terminal_width=100)
    assert done.exit_code == 0, done.output
    assert "--help" in done.output
    assert "<bool>" not in done.output
