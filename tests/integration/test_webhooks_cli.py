"""``conveyor webhooks`` on both backends: create prints the URL and the secret once, list
and show never print it, bad input exits 2."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from conveyor.cli.main import app


def run(database_url: str, *args: str, stdin: str | None = None) -> tuple[int, str]:
    done = CliRunner().invoke(
        app, ["webhooks", *args, "--database", database_url], input=stdin, terminal_width=200
    )
    return done.exit_code, done.output


def test_webhooks_commands(database_url: str, tmp_path: Path) -> None:
    definition = {"name": "w", "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}]}
    (tmp_path / "w.json").write_text(json.dumps(definition))
    done = CliRunner().invoke(
        app, ["workflows", "apply", str(tmp_path / "w.json"), "--database", database_url]
    )
    assert done.exit_code == 0, done.output
    code, out = run(database_url, "create", "w", "--id", "gh", "--scheme", "github")
    assert code == 0, out
    secret = out.split("secret (shown only now): ")[1].split()[0]
    assert secret.startswith("whsec_") and "/hooks/" in out

    code, out = run(database_url, "list", "--json")
    assert code == 0, out
    (listed,) = json.loads(out)
    assert listed["key"] == "gh" and secret not in out
    hook = listed["id"]
    code, out = run(database_url, "show", hook)
    assert code == 0 and secret not in out

    code, out = run(database_url, "secret", hook, "--set-from-stdin", stdin="whsec_given_one\n")
    assert code == 0, out
    assert run(database_url, "disable", hook)[0] == 0
    assert run(database_url, "deliveries", hook, "--json") == (0, "[]\n")
    assert run(database_url, "delete", hook)[0] == 0

    assert run(database_url, "show", hook)[0] == 2
    assert run(database_url, "create", "nope", "--id", "x")[0] == 2
    assert run(database_url, "create", "w", "--id", "x", "--auth", "bogus")[0] == 2
    assert run(database_url, "secret", "x", "--set-from-stdin", stdin="short\n")[0] == 2
