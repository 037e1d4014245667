"""The command line as users run it: real processes, exit codes, one-line messages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def conveyor(*args: str, cwd: Path, database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"CONVEYOR_DATABASE_URL": database, "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
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
        "  - {id: boom, type: acme.crash, needs: [first]}\n"
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


def test_ctrl_c_cancels_the_execution_and_exits_130(workdir: Path, database_url: str) -> None:
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
        process.send_signal(signal.SIGINT)
        _out, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
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
