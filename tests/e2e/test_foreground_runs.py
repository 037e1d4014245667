"""``conveyor run`` and ``conveyor execute --wait`` as users run them, on both databases:
signals and cancels from another terminal reach them at once, and a workflow that calls
another workflow finishes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cli import CLI, conveyor

APPROVAL = """
name: approval
nodes:
  - id: ask
    type: wait_for_event
    config: {event: approve, timeout: 2m}
  - id: decided
    type: transform
    needs: [ask]
    config: {output: {approved_by: "{{ nodes.ask.output.by }}"}}
"""
CHILD = """
name: child
nodes:
  - id: double
    type: transform
    config: {output: {n: "{{ input.n * 2 }}"}}
"""
PARENT = """
name: parent
nodes:
  - id: call
    type: workflow.call
    config: {workflow: child, input: {n: "{{ input.n }}"}}
  - id: done
    type: transform
    needs: [call]
    config: {output: {child_said: "{{ nodes.call.output.double.n }}"}}
"""
# Slow heartbeats: a control that only reached the run through them would take up to 60 s.
SLOW_HEARTBEATS = {"CONVEYOR_HEARTBEAT_SECONDS": "60", "CONVEYOR_LEASE_SECONDS": "180"}
# Far above the ~1 s promised (a loaded CI machine also pays the report's imports), below the
# 60 s heartbeat and the 2 min wait.
PROMPT = 25.0


def start(args: list[str], cwd: Path, database: str) -> subprocess.Popen[str]:
    env = {"CONVEYOR_DATABASE_URL": database, "PATH": "/usr/bin:/bin", **SLOW_HEARTBEATS}
    return subprocess.Popen(
        [*CLI, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def waiting_execution(cwd: Path, database: str, process: subprocess.Popen[str]) -> str:
    """The id of the execution once its wait_for_event step is waiting."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        listed = conveyor("executions", "list", "--json", cwd=cwd, database=database)
        rows: list[dict[str, Any]] = json.loads(listed.stdout) if listed.returncode == 0 else []
        if rows:
            shown = conveyor(
                "executions", "show", rows[0]["id"], "--json", cwd=cwd, database=database
            )
            steps = json.loads(shown.stdout)["steps"] if shown.returncode == 0 else []
            if any(s["status"] == "waiting" for s in steps):
                return str(rows[0]["id"])
        time.sleep(0.2)
    pytest.fail("the execution never reached its wait")


@pytest.mark.parametrize("command", ["run", "execute --wait"])
@pytest.mark.timeout(180)
def test_a_signal_from_another_process_resumes_a_foreground_run(
    tmp_path: Path, database_url: str, command: str
) -> None:
    (tmp_path / "approval.yaml").write_text(APPROVAL)
    if command == "run":
        args = ["run", "approval.yaml"]
    else:
        assert (
            conveyor(
                "workflows", "apply", "approval.yaml", cwd=tmp_path, database=database_url
            ).returncode
            == 0
        )
        args = ["execute", "approval", "--wait"]
    process = start(args, tmp_path, database_url)
    try:
        execution_id = waiting_execution(tmp_path, database_url, process)
        sent = conveyor(
            "executions",
            "signal",
            execution_id,
            "approve",
            "--data",
            '{"by": "ada"}',
            cwd=tmp_path,
            database=database_url,
        )
        assert sent.returncode == 0, sent.stderr
        signalled = time.monotonic()
        out, err = process.communicate(timeout=PROMPT)
        took = time.monotonic() - signalled
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert json.loads(out) == {"decided": {"approved_by": "ada"}}
    print(f"signal reached the foreground run in {took:.2f}s")


@pytest.mark.timeout(180)
def test_a_cancel_from_another_process_stops_a_foreground_run(
    tmp_path: Path, database_url: str
) -> None:
    (tmp_path / "approval.yaml").write_text(APPROVAL)
    process = start(["run", "approval.yaml"], tmp_path, database_url)
    try:
        execution_id = waiting_execution(tmp_path, database_url, process)
        cancelled = conveyor(
            "executions", "cancel", execution_id, cwd=tmp_path, database=database_url
        )
        assert cancelled.returncode == 0, cancelled.stderr
        out, err = process.communicate(timeout=PROMPT)
    finally:
        process.kill()
    assert process.returncode == 1, err
    assert json.loads(out)["status"] == "cancelled"


@pytest.mark.timeout(180)
def test_run_finishes_a_workflow_that_calls_another(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "child.yaml").write_text(CHILD)
    (tmp_path / "parent.yaml").write_text(PARENT)
    applied = conveyor("workflows", "apply", "child.yaml", cwd=tmp_path, database=database_url)
    assert applied.returncode == 0, applied.stderr
    process = start(["run", "parent.yaml", "--input", '{"n": 21}'], tmp_path, database_url)
    try:
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert json.loads(out) == {"done": {"child_said": 42}}
    listed = json.loads(
        conveyor("executions", "list", "--json", cwd=tmp_path, database=database_url).stdout
    )
    assert sorted(r["status"] for r in listed) == ["succeeded", "succeeded"]
