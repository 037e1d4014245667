"""``conveyor inbox``, ``conveyor tasks ...`` and ``conveyor nodes ...``: the inbox commands
in process on both backends (two dozen commands; a real process each would cost minutes),
the node reference as users run it (real processes; it needs no database)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli.main import app
from tests.integration.test_cli import conveyor

DEFINITION = """
name: onboarding
nodes:
  - id: hello
    type: notify
    config: {title: "Welcome {{ input.who }}", message: "to the team"}
  - id: private
    type: notify
    needs: [hello]
    config: {title: "Only for Ann", to: ann@example.com}
  - id: laptop
    type: task.create
    needs: [private]
    config:
      title: "Order a laptop for {{ input.who }}"
      assignee: ann@example.com
      due_at: "2030-01-02T09:00:00+01:00"
"""
ENV = {"CONVEYOR_SECRET_KEY": os.environ["CONVEYOR_SECRET_KEY"]}


def test_inbox_and_tasks(tmp_path: Path, database_url: str) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        env = {
            **ENV,
            "CONVEYOR_NEW_PASSWORD": "a long password 1",
            "CONVEYOR_DATABASE_URL": database_url,
            "COLUMNS": "200",
        }
        done = CliRunner().invoke(app, list(args), env=env, terminal_width=200)
        return done.exit_code, done.stdout, done.stderr

    (tmp_path / "onboarding.yaml").write_text(DEFINITION)
    assert run("users", "create", "ann@example.com", "--role", "member")[0] == 0
    code, _, stderr = run("run", str(tmp_path / "onboarding.yaml"), "--input", '{"who": "Bo"}')
    assert code == 0, stderr

    code, stdout, stderr = run("inbox", "--json")
    assert code == 0, stderr
    notes = json.loads(stdout)
    assert [n["title"] for n in notes] == ["Only for Ann", "Welcome Bo"]
    # (Tables are checked as JSON: in process, the width of Rich's console is whatever it
    # was when the CLI was first imported.)
    code, stdout, _ = run("inbox", "--unread", "--json")
    assert code == 0 and "Welcome Bo" in stdout and "onboarding" in stdout
    code, _, stderr = run("inbox", "--user", "nobody@example.com")
    assert code == 2 and "no user has the email" in stderr

    assert run("inbox", "read", notes[1]["id"])[1].strip() == "marked 1 read"
    unread = json.loads(run("inbox", "--unread", "--json", "--user", "ann@example.com")[1])
    assert [n["title"] for n in unread] == ["Only for Ann"]
    assert run("inbox", "read-all", "--user", "ann@example.com")[1].strip() == "marked 1 read"
    assert json.loads(run("inbox", "--unread", "--json")[1]) == []
    code, _, stderr = run("inbox", "read", "0" * 32)
    assert code == 2 and "not found" in stderr

    code, stdout, _ = run("tasks", "list", "--json")
    assert code == 0 and "Order a laptop for Bo" in stdout and "ann@example.com" in stdout
    assert json.loads(stdout)[0]["due_at"] == "2030-01-02 08:00:00+00:00"
    (task,) = json.loads(run("tasks", "list", "--mine", "--user", "ANN@example.com", "--json")[1])
    assert json.loads(run("tasks", "list", "--assignee", "bo@example.com", "--json")[1]) == []
    code, stdout, _ = run("tasks", "done", task["id"], "--user", "ann@example.com")
    assert code == 0 and "is done" in stdout
    assert json.loads(run("tasks", "list", "--json")[1]) == []
    (done,) = json.loads(run("tasks", "list", "--status", "done", "--json")[1])
    assert done["done_by"] == task["assignee_id"] and done["done_at"]
    assert "is open" in run("tasks", "reopen", task["id"])[1]
    code, _, stderr = run("tasks", "list", "--status", "closed")
    assert code == 2 and "open, done or all" in stderr
    code, _, stderr = run("tasks", "list", "--mine")
    assert code == 2 and "--user" in stderr


@pytest.mark.timeout(120)
def test_nodes_list_show_and_docs(tmp_path: Path) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        done = conveyor(*args, cwd=tmp_path, database=f"sqlite:///{tmp_path}/c.db", env=ENV)
        return done.returncode, done.stdout, done.stderr

    code, stdout, _ = run("nodes", "list")
    assert code == 0 and "task.create" in stdout and "http.request" in stdout
    listed = json.loads(run("nodes", "list", "--json")[1])
    assert "task.create" in [n["name"] for n in listed]
    code, stdout, _ = run("nodes", "show", "task.create")
    assert code == 0 and stdout.startswith("## task.create\n") and "```yaml" in stdout
    shown = json.loads(run("nodes", "show", "notify", "--json")[1])
    assert shown["example"]["type"] == "notify"
    code, _, stderr = run("nodes", "show", "task.creat")
    assert code == 2 and "did you mean 'task.create'" in stderr

    code, stdout, _ = run("nodes", "docs", "--write", "nodes.md")
    assert code == 0 and "wrote nodes.md" in stdout
    committed = Path(__file__).parents[2] / "docs" / "nodes.md"
    assert (tmp_path / "nodes.md").read_text() == committed.read_text()
    assert run("nodes", "docs")[1] == committed.read_text()
