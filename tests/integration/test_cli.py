"""The command line as users run it: real processes, exit codes, one-line messages."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-c", "from conveyor.cli.main import main; main()"]

GOOD = """
name: cli-demo
nodes:
  - id: start
    type: transform
    config: {output: {n: "{{ input.n }}"}}
  - id: big
    type: condition
    needs: [start]
    config: {if: "{{ nodes.start.output.n > 5 }}"}
  - id: yes
    type: transform
    needs: [big.true]
    config: {output: "big {{ nodes.start.output.n }}"}
  - id: no
    type: transform
    needs: [big.false]
    config: {output: small}
"""

FAILING = """
name: cli-fail
nodes:
  - id: boom
    type: fail
    config: {message: "card declined"}
"""


def conveyor(
    *args: str, cwd: Path, database: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "CONVEYOR_DATABASE_URL": database,
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "200",
            **(env or {}),
        },
        check=False,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "fail.yaml").write_text(FAILING)
    return tmp_path


def test_run_prints_the_result_and_exits_0(workdir: Path, database_url: str) -> None:
    done = conveyor("run", "good.yaml", "--input", '{"n": 7}', cwd=workdir, database=database_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"yes": "big 7"}
    assert "skipped" in done.stderr and "succeeded" in done.stderr
    listed = conveyor("executions", "list", "--json", cwd=workdir, database=database_url)
    [row] = json.loads(listed.stdout)
    shown = conveyor("executions", "show", row["id"], "--json", cwd=workdir, database=database_url)
    detail = json.loads(shown.stdout)
    assert detail["input"] == {"n": 7}
    assert {s["node_id"]: s["status"] for s in detail["steps"]} == {
        "start": "succeeded",
        "big": "succeeded",
        "yes": "succeeded",
        "no": "skipped",
    }
    human = conveyor("executions", "show", row["id"][:12], cwd=workdir, database=database_url)
    assert human.returncode == 0 and "big 7" in human.stdout


def test_a_failed_execution_exits_1(workdir: Path, database_url: str) -> None:
    done = conveyor("run", "fail.yaml", cwd=workdir, database=database_url)
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["message"] == "card declined"


@pytest.mark.parametrize(
    ("definition", "expected"),
    [
        (
            "name: x\nnodes:\n  - {id: a, type: transfrom}\n",
            "node 'a', type: unknown node type 'transfrom' (did you mean 'transform'?)",
        ),
        (
            "name: x\nnodes:\n  - {id: a, type: http.request, config: {}}\n",
            "node 'a', config.url: Field required",
        ),
        (
            "name: x\nnodes:\n  - {id: a, type: transform, config: {output: 1}, timeout: soon}\n",
            "node 'a', timeout: Value error, 'soon' is not a duration",
        ),
        (
            "name: x\nnodes:\n  - {id: a, type: transform, config: {output: 1}, needs: [b]}\n"
            "  - {id: b, type: transform, config: {output: 1}, needs: [a]}\n",
            "the graph has a cycle: a -> b -> a",
        ),
    ],
)
def test_bad_definitions_exit_2_naming_node_and_field(
    workdir: Path, definition: str, expected: str
) -> None:
    (workdir / "bad.yaml").write_text(definition)
    for command in (["validate", "bad.yaml"], ["run", "bad.yaml"]):
        done = conveyor(*command, cwd=workdir, database=f"sqlite:///{workdir / 'x.db'}")
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr
        assert "Traceback" not in done.stderr


def test_bad_input_and_bad_database_exit_2(workdir: Path) -> None:
    sqlite = f"sqlite:///{workdir / 'x.db'}"
    done = conveyor("run", "good.yaml", "--input", "{n: 7", cwd=workdir, database=sqlite)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: --input is not valid JSON")
    assert len(done.stderr.strip().splitlines()) == 1
    done = conveyor("run", "good.yaml", cwd=workdir, database="sqlite:////nonexistent/dir/x.db")
    assert done.returncode == 2 and "does not exist" in done.stderr
    done = conveyor(
        "run", "good.yaml", cwd=workdir, database="postgresql://nobody@127.0.0.1:1/none"
    )
    assert done.returncode == 2 and "cannot reach the database" in done.stderr
    done = conveyor("run", "missing.yaml", cwd=workdir, database=sqlite)
    assert done.returncode == 2 and "cannot read missing.yaml" in done.stderr


def test_schema_is_json_schema(workdir: Path) -> None:
    done = conveyor("schema", cwd=workdir, database="sqlite:///unused.db")
    schema = json.loads(done.stdout)
    assert schema["title"] == "WorkflowDefinition" and "nodes" in schema["properties"]


def test_plugin_node_types_load(workdir: Path) -> None:
    (workdir / "mynodes.py").write_text(
        "import conveyor\n\n"
        "@conveyor.node('acme.greet')\n"
        "async def greet(ctx, config):\n"
        "    return {'hello': ctx.idempotency_key.split(':')[1]}\n"
    )
    (workdir / "greet.yaml").write_text("name: greet\nnodes:\n  - {id: hi, type: acme.greet}\n")
    done = conveyor(
        "run",
        "greet.yaml",
        "--plugin",
        "mynodes",
        cwd=workdir,
        database=f"sqlite:///{workdir / 'x.db'}",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"hi": {"hello": "hi"}}


def test_show_prints_the_step_index_and_the_traceback_of_a_crash(
    workdir: Path, database_url: str
) -> None:
    (workdir / "crashing.py").write_text(
        "import conveyor\n\n"
        "def lookup(table, key):\n"
        "    return table[key]\n\n"
        "@conveyor.node('acme.crash')\n"
        "async def crash(ctx, config):\n"
        "    return lookup({}, 'missing-key')\n"
    )
    (workdir / "crash.yaml").write_text(
        "name: crash\nnodes:\n  - {id: first, type: transform, config: {output: 1}}\n"
        "  - {id: boom, type: acme.crash, needs: [first], retry: {max_attempts: 1}}\n"
    )
    done = conveyor("run", "crash.yaml", "--plugin", "crashing", cwd=workdir, database=database_url)
    assert done.returncode == 1, done.stderr
    [row] = json.loads(
        conveyor("executions", "list", "--json", cwd=workdir, database=database_url).stdout
    )
    shown = conveyor("executions", "show", row["id"], cwd=workdir, database=database_url)
    assert shown.returncode == 0, shown.stderr
    assert "boom (step 2, attempt 1, failed)" in shown.stdout
    assert "  traceback:\n    Traceback (most recent call last):" in shown.stdout
    assert "in crash" in shown.stdout and "return table[key]" in shown.stdout
    assert "    KeyError: 'missing-key'" in shown.stdout


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"]
)
def test_ctrl_c_or_sigterm_cancels_the_execution_and_exits_130_or_143(
    workdir: Path, database_url: str, signum: signal.Signals, code: int
) -> None:
    (workdir / "slow.yaml").write_text(
        "name: slow\nnodes:\n  - {id: first, type: transform, config: {output: 1}}\n"
        "  - {id: hold, type: wait, needs: [first], config: {duration: 1h}}\n"
    )
    env = {"CONVEYOR_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [*CLI, "run", "slow.yaml"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = conveyor("executions", "list", "--json", cwd=workdir, database=database_url)
            rows = json.loads(listed.stdout) if listed.returncode == 0 else []
            if rows and rows[0]["steps_succeeded"] == 1:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the execution never reached its wait")
        process.send_signal(signum)
        _out, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    [row] = json.loads(
        conveyor("executions", "list", "--json", cwd=workdir, database=database_url).stdout
    )
    assert row["status"] == "cancelled"
    detail = json.loads(
        conveyor(
            "executions", "show", row["id"], "--json", cwd=workdir, database=database_url
        ).stdout
    )
    assert {s["node_id"]: s["status"] for s in detail["steps"]} == {
        "first": "succeeded",
        "hold": "cancelled",
    }


@pytest.mark.parametrize("command", [["run", "good.yaml"], ["server", "--port", "1"]])
def test_a_file_that_is_not_a_sqlite_database_exits_2_in_one_line(
    workdir: Path, command: list[str]
) -> None:
    garbage = workdir / "garbage.db"
    garbage.write_bytes(b"this is not a database, only text\n" * 300)
    done = conveyor(*command, cwd=workdir, database=f"sqlite:///{garbage}")
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert str(garbage) in line and "not a SQLite database" in line, line
    assert garbage.read_bytes().startswith(b"this is not a database")


def test_validate_lists_every_problem_in_one_pass(workdir: Path) -> None:
    (workdir / "bad.yaml").write_text(
        "name: x\nnodes:\n"
        "  - {id: a, type: transform, config: {output: 1}, timeout: soon}\n"
        "  - {id: w1, type: wait, needs: a, config: {duration: later}}\n"
        "  - {id: w2, type: wait, needs: a, config: {duration: never}}\n"
        "  - {id: t, type: transform, needs: a, config: {output: '{{ nodes.ghost.output }}'}}\n"
        "  - {id: hold, type: wait, needs: a, timeout: 300ms, config: {duration: 2s}}\n"
    )
    done = conveyor("validate", "bad.yaml", cwd=workdir, database="sqlite:///unused.db")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 5, done.stderr
    for where in (
        "node 'a', timeout:",
        "node 'w1', config.duration:",
        "node 'w2', config.duration:",
        "node 't', config.output: template refers to unknown node 'ghost'",
        "node 'hold', timeout: a step timeout bounds node code",
    ):
        assert any(where in line for line in lines), (where, done.stderr)


def test_an_input_or_definition_over_its_limit_exits_2_naming_the_setting(workdir: Path) -> None:
    sqlite = f"sqlite:///{workdir / 'x.db'}"
    (workdir / "big.json").write_text(json.dumps({"n": 7, "blob": "x" * 5000}))
    limits = {"CONVEYOR_MAX_INPUT_BYTES": "1000", "CONVEYOR_MAX_DEFINITION_BYTES": "1000"}
    for command in (["run", "good.yaml"], ["execute", "cli-demo"]):
        done = conveyor(*command, "--input", "@big.json", cwd=workdir, database=sqlite, env=limits)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert line.startswith("error: the input is 5") and "CONVEYOR_MAX_INPUT_BYTES" in line
    (workdir / "wide.yaml").write_text(GOOD.replace("small", "s" * 2000))
    for command in (["validate", "wide.yaml"], ["run", "wide.yaml"]):
        done = conveyor(*command, cwd=workdir, database=sqlite, env=limits)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert "over the limit of 1000 bytes (CONVEYOR_MAX_DEFINITION_BYTES)" in line


def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    # Each check starts CLI processes: seconds apiece on a loaded 2-core machine.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting until {what}")


def _listed(workdir: Path, database: str) -> dict[str, dict[str, Any]]:
    listed = conveyor("executions", "list", "--json", cwd=workdir, database=database)
    return {r["workflow_name"]: r for r in json.loads(listed.stdout)} if listed.stdout else {}


@pytest.mark.timeout(240)  # a dozen CLI processes; each can take seconds under load
def test_the_worker_says_when_it_starts_and_what_it_did_when_it_stops(
    workdir: Path, database_url: str
) -> None:
    (workdir / "holder.yaml").write_text(
        "name: holder\nnodes:\n  - {id: first, type: transform, config: {output: 1}}\n"
        "  - {id: hold, type: wait, needs: [first], config: {duration: 1h}}\n"
    )
    for name, command in (("good.yaml", "cli-demo"), ("holder.yaml", "holder")):
        conveyor("workflows", "apply", name, cwd=workdir, database=database_url)
        conveyor("execute", command, "--input", '{"n": 1}', cwd=workdir, database=database_url)
    # A password in the URL (PostgreSQL's trust authentication ignores it) must not be shown.
    database = database_url.replace("postgres@", "postgres:s3cret@")
    env = {
        "CONVEYOR_DATABASE_URL": database,
        "PATH": "/usr/bin:/bin",
        # The one-hour wait stays in its slot, so the stop finds it in flight.
        "CONVEYOR_HOLD_TIMERS_SECONDS": "7200",
        "CONVEYOR_SHUTDOWN_GRACE_SECONDS": "1",
    }
    process = subprocess.Popen(
        [*CLI, "worker", "--concurrency", "3"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(
            lambda: (
                _listed(workdir, database_url)["cli-demo"]["status"] == "succeeded"
                and _listed(workdir, database_url)["holder"]["steps_succeeded"] == 1
            ),
            "one execution finished and the other is waiting in its slot",
        )
        process.send_signal(signal.SIGTERM)
        _out, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    started = re.search(
        r"worker (\S+) started: database (\S+), concurrency 3, scheduler on$", stderr, re.M
    )
    assert started, stderr
    worker_id, shown = started.groups()
    assert shown.endswith(database_url.rsplit("/", 1)[1])
    assert "s3cret" not in stderr
    assert ("***" in shown) is (database != database_url)
    [stopped] = [line for line in stderr.splitlines() if "stopped" in line]
    assert stopped.endswith(
        f"worker {worker_id} stopped: executions finished 1, released unfinished 1"
    )
    assert _listed(workdir, database_url)["holder"]["status"] == "queued"


def test_executions_list_never_cuts_ids(workdir: Path, database_url: str) -> None:
    conveyor("run", "good.yaml", "--input", '{"n": 1}', cwd=workdir, database=database_url)
    [row] = _listed(workdir, database_url).values()
    for columns in ("80", "50"):
        listed = subprocess.run(
            [*CLI, "executions", "list"],
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=60,
            env={
                "CONVEYOR_DATABASE_URL": database_url,
                "PATH": "/usr/bin:/bin",
                "COLUMNS": columns,
            },
            check=True,
        )
        assert row["id"] in listed.stdout, listed.stdout
        assert max(len(line) for line in listed.stdout.splitlines()) <= int(columns)


def test_run_without_a_terminal_prints_one_table_timed_like_the_summary(
    workdir: Path, database_url: str
) -> None:
    (workdir / "pause.yaml").write_text(
        "name: pause\nnodes:\n  - {id: first, type: transform, config: {output: 1}}\n"
        "  - {id: pause, type: wait, needs: [first], config: {duration: 300ms}}\n"
    )
    done = conveyor("run", "pause.yaml", cwd=workdir, database=database_url)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stderr.splitlines() if re.search(r"\bpause\b.*\bwait\b", line)]
    assert len(rows) == 1, done.stderr
    [row] = rows
    [execution] = _listed(workdir, database_url).values()
    shown = conveyor(
        "executions", "show", execution["id"], "--json", cwd=workdir, database=database_url
    )
    [step] = [s for s in json.loads(shown.stdout)["steps"] if s["node_id"] == "pause"]
    took = datetime.fromisoformat(step["finished_at"]) - datetime.fromisoformat(step["started_at"])
    milliseconds = took.total_seconds() * 1000
    assert f"{milliseconds:.0f}ms" in row


def test_an_input_that_breaks_the_declared_schema_exits_2_naming_each_field(
    workdir: Path,
) -> None:
    sqlite = f"sqlite:///{workdir / 'x.db'}"
    (workdir / "typed.yaml").write_text(
        "name: typed\n"
        "input:\n"
        "  type: object\n"
        "  properties:\n"
        "    email: {type: string}\n"
        "    count: {type: integer, minimum: 1}\n"
        "  required: [email]\n"
        "nodes:\n"
        "  - {id: t, type: transform, config: {output: '{{ input.email }}'}}\n"
    )
    for command in (["run", "typed.yaml"], ["execute", "typed"]):
        done = conveyor(*command, "--input", '{"count": 0}', cwd=workdir, database=sqlite)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            "invalid input: input.count: 0 is less than the minimum of 1",
            "invalid input: input.email: a value is required",
        ]
    done = conveyor(
        "run", "typed.yaml", "--input", '{"email": "a@b.c"}', cwd=workdir, database=sqlite
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"t": "a@b.c"}

    (workdir / "typed.yaml").write_text(
        (workdir / "typed.yaml").read_text().replace("type: integer", "type: int")
    )
    done = conveyor("validate", "typed.yaml", cwd=workdir, database=sqlite)
    assert done.returncode == 2
    assert "input.properties.count.type:" in done.stderr
    schema = json.loads(conveyor("schema", cwd=workdir, database=sqlite).stdout)
    assert "JSON Schema" in schema["properties"]["input"]["description"]


def test_commands_that_change_something_are_in_the_audit_log(
    workdir: Path, database_url: str
) -> None:
    """Channel cli, the OS user as the actor; ``audit list`` shows them (every command is
    held to being audited or read-only in tests/unit/test_cli.py)."""
    env = {"USER": "auditor", "LOGNAME": "auditor"}

    def run(*args: str) -> str:
        done = conveyor(*args, cwd=workdir, database=database_url, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("workflows", "apply", "good.yaml")
    execution_id = run("execute", "cli-demo", "--input", '{"n": 1}').split()[0]
    run("executions", "cancel", execution_id)
    entries = json.loads(run("audit", "list", "--json"))
    assert [e["action"] for e in entries] == [
        "execution.cancel",
        "workflow.execute",
        "workflow.apply",
    ]
    cancel = entries[0]
    assert cancel["actor"] == {"display": "cli:auditor", "user_id": None, "api_key_id": None}
    assert cancel["target"] == {"type": "execution", "id": execution_id}
    assert cancel["source"]["channel"] == "cli" and cancel["source"]["ip"] is None
    assert entries[1]["target"] == {"type": "workflow", "id": "cli-demo"}
    assert entries[2]["details"] == {"file": "good.yaml"}
    assert database_url not in json.dumps(entries)
