"""A newcomer's first start: right after the README's command 1 (``conveyor run`` on
./conveyor.db), ``conveyor server`` on the same database prints a one-time sign-in link
(loopback, no users) that opens the dashboard with that execution in it; on a non-loopback
address with no users it refuses to start."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.dashboard.conftest import conveyor_program
from tests.e2e.processes import PROFILE, REPO
from tests.e2e.test_server import free_port

LINK = re.compile(r"Dashboard: open (http://127\.0\.0\.1:\d+/signin/link/\S+) to sign in")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(PROFILE)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def first_link(process: subprocess.Popen[str], within: float = 30) -> str:
    """The sign-in link from the server's first lines (it prints it before serving)."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        found = LINK.search(line)
        if found:
            return found.group(1)
        if "Uvicorn running" in line:
            break
    raise AssertionError("no sign-in link printed:\n" + "".join(lines))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder where the README's command 1 ran: ./conveyor.db holds one execution."""
    example = str(REPO / "examples/order-followup.yaml")
    run = subprocess.run(
        [*conveyor_program(), "run", example, "--input", '{"order_id": 42}'],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return tmp_path


@pytest.fixture
def started(project: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    process = subprocess.Popen(
        [*conveyor_program(), "server", "--port", str(port)],
        cwd=project,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


def wait_ready(base: str, within: float = 30) -> None:
    with httpx.Client(base_url=base, timeout=2) as client:
        for _ in range(int(within * 10)):
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling with a deadline
    raise AssertionError("the server did not become ready")


@pytest.mark.timeout(120)
def test_a_fresh_local_server_prints_a_one_time_link_to_the_dashboard(
    started: tuple[subprocess.Popen[str], int],
) -> None:
    process, port = started
    link = first_link(process)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base)
    with httpx.Client(base_url=base, timeout=10) as browser:
        assert browser.get("/").status_code == 303  # to the sign-in page
        signed_in = browser.get(link)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        page = browser.get("/", follow_redirects=True)
        assert page.status_code == 200
        assert str(page.url).endswith("/w/default/workflows")
        assert 'href="/w/default/workflows/order-followup"' in page.text
        executions = browser.get("/api/v1/workspaces/default/executions").json()["items"]
        assert [e["workflow_name"] for e in executions] == ["order-followup"]
        assert executions[0]["status"] == "succeeded"
    with httpx.Client(base_url=base, timeout=10) as stranger:
        again = stranger.get(link)
        assert again.status_code == 401
        assert "already used" in again.text
        assert "conveyor_session" not in again.headers.get("set-cookie", "")


@pytest.mark.timeout(60)
def test_a_server_on_a_public_address_with_no_users_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [*conveyor_program(), "server", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "no users yet" in result.stderr and "conveyor users create" in result.stderr
