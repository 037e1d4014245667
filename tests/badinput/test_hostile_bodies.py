"""Hostile request bodies against a real ``conveyor server`` (SQLite and PostgreSQL): bodies
over CONVEYOR_MAX_REQUEST_BYTES (announced, streamed chunked without a length, and with a
Content-Length that lies), JSON nested 10,000 levels deep, invalid UTF-8, NUL bytes, numbers
past any double (1e400) or of 5,000 digits, duplicate keys, wrong content types, and YAML
bombs in definition uploads. Every one is answered promptly with a 4xx problem+json (never
a 500, never a hang), the server keeps answering, and nothing is stored. The CLI refuses the
same bad files with exit code 2 and a message."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from conveyor.api.app import create_app
from conveyor.api.bodies import JsonRoute
from conveyor.app import Conveyor
from conveyor.cli.main import app
from tests.badinput.routes import api_routes
from tests.e2e.processes import REPO
from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key

LIMIT = 64 * 1024
WS = f"{API}/workspaces/{WORKSPACE}"
# Each answer comes at once; this bound only fails on a hang (measured: well under 1 s).
PROMPT = 15.0
NAME = "hostile"


def bomb(levels: int = 9) -> str:
    """A "billion laughs": a few hundred bytes that expand to 9**levels strings."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return (
        f"name: {NAME}\n"
        + "\n".join(lines)
        + f"\nnodes:\n  - id: a\n    type: transform\n    config: {{output: *l{levels - 1}}}\n"
    )


def definition(output: str = "1") -> bytes:
    """A definition whose node's output is ``output`` (raw JSON text)."""
    return (
        f'{{"definition": {{"name": "{NAME}", "nodes": [{{"id": "a", "type": "transform",'
        f' "config": {{"output": {output}}}}}]}}}}'
    ).encode()


TARGET = "target"  # the one workflow that exists, for the execute cases
EXECUTE = f"{WS}/workflows/{TARGET}/execute"
DEEP = "[" * 10_000 + "]" * 10_000
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Case:
    name: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    method: str = "POST"


CASES = [
    Case("announced too large", f"{WS}/workflows", definition('"' + "x" * (2 * LIMIT) + '"')),
    Case("deeply nested JSON", f"{WS}/workflows", definition(DEEP)),
    Case("deeply nested input", EXECUTE, f'{{"input": {DEEP}}}'.encode()),
    Case("invalid UTF-8", f"{WS}/workflows", definition('"caf\xe9"').replace(b"\xc3\xa9", b"\xe9")),
    Case("NUL in a string", f"{WS}/workflows", definition('"a\\u0000b"')),
    Case("raw NUL byte", f"{WS}/workflows", definition('"a\x00b"')),
    Case("1e400", f"{WS}/workflows", definition("1e400")),
    Case("-1e400", f"{WS}/workflows", definition("-1e400")),
    Case("NaN", f"{WS}/workflows", definition("NaN")),
    Case("5000 digits", f"{WS}/workflows", definition("9" * 5000)),
    Case("2**64", f"{WS}/workflows", definition(str(2**64))),
    Case("nested 300 levels", f"{WS}/workflows", definition("[" * 300 + "]" * 300)),
    Case("2**64 input", EXECUTE, f'{{"input": {{"n": {2**64}}}}}'.encode()),
    Case("lone surrogate", EXECUTE, b'{"input": {"n": "\\ud800"}}'),
    Case(
        "duplicate keys",
        f"{WS}/workflows",
        definition().replace(b'{"name"', b'{"name": "other", "name"'),
    ),
    Case("no JSON at all", f"{WS}/workflows", b"definition=yes"),
    Case("text/plain", f"{WS}/workflows", definition(), {"Content-Type": "text/plain"}),
    Case(
        "form",
        f"{WS}/workflows",
        b"definition=x",
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Case("YAML body", f"{WS}/workflows", bomb().encode(), {"Content-Type": "application/yaml"}),
    Case("YAML bomb to validate", f"{WS}/validate", json.dumps({"yaml": bomb()}).encode()),
    Case("deep YAML to validate", f"{WS}/validate", json.dumps({"yaml": DEEP}).encode()),
    Case("empty body", f"{WS}/workflows", b""),
    Case("1e400 input", EXECUTE, b'{"input": {"n": 1e400}}'),
    Case("5000-digit input", EXECUTE, b'{"input": {"n": ' + b"9" * 5000 + b"}}"),
    Case("NUL input", EXECUTE, b'{"input": {"n": "a\\u0000b"}}'),
]
# The same, delivered to a webhook that needs no credentials (its own body parser).
WEBHOOK_CASES = [
    Case(c.name, "", c.body.replace(b'{"definition": ', b'{"payload": '))
    for c in CASES
    if c.name in ("deeply nested JSON", "invalid UTF-8", "NUL in a string", "1e400", "NaN")
    or c.name in ("5000 digits", "duplicate keys", "no JSON at all", "2**64", "nested 300 levels")
    or c.name == "lone surrogate"
]
# The validate route answers 200 with the problems for a definition it could read (what an
# editor needs); what it must never do is fail or hang.
READ_AND_REFUSED = {"YAML bomb to validate", "deep YAML to validate"}


def check_problem(response: httpx.Response, what: str) -> None:
    assert 400 <= response.status_code < 500, (
        f"{what}: {response.status_code} {response.text[:300]}"
    )
    assert response.headers["content-type"].startswith("application/problem+json"), (
        what,
        response.headers,
    )
    problem = response.json()
    assert problem["status"] == response.status_code and problem["detail"], (what, problem)


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(
        database_url, tmp_path / "server.log", env={"CONVEYOR_MAX_REQUEST_BYTES": str(LIMIT)}
    )
    try:
        process.wait_ready(within=30)
        yield process
    finally:
        process.close()


def raw(port: int, head: bytes, body: bytes, *, read_within: float = PROMPT) -> bytes:
    """Send ``head`` and ``body`` on a plain socket; what the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_within) as sock:
        sock.sendall(head)
        # the server may answer and close before the whole body was sent
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(body)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def streamed_over_limit(client: httpx.Client, key: str) -> httpx.Response:
    """A body sent chunked, with no Content-Length, that passes the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"definition": {"name": "' + NAME.encode() + b'", "description": "'
        for _ in range(2 * LIMIT // 4096):
            yield b"x" * 4096
        yield b'", "nodes": []}}'

    return client.post(
        f"{WS}/workflows",
        content=chunks(),
        headers={"Authorization": f"Bearer {key}", **JSON},
    )


@pytest.mark.timeout(180)
def test_hostile_bodies_get_a_prompt_4xx_problem_and_store_nothing(server: ServerProcess) -> None:
    key = api_key(server.base_url)
    auth = {"Authorization": f"Bearer {key}"}
    timings: dict[str, float] = {}
    details: list[str] = []
    wrong: list[str] = []  # every case is tried before the test fails, so all are reported
    with httpx.Client(base_url=server.base_url, timeout=PROMPT) as client:
        target = {
            "name": TARGET,
            "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}],
            "triggers": [{"type": "webhook", "id": "open", "auth": {"mode": "none"}}],
        }
        made = client.post(f"{WS}/workflows", json={"definition": target}, headers=auth)
        assert made.status_code == 201, made.text
        hook = httpx.URL(made.json()["triggers"][0]["url"]).path
        cases = [*CASES, *(Case(f"webhook: {c.name}", hook, c.body) for c in WEBHOOK_CASES)]
        for case in cases:
            began = time.monotonic()
            response = client.request(
                case.method, case.path, content=case.body, headers={**auth, **case.headers}
            )
            timings[case.name] = time.monotonic() - began
            if case.name in READ_AND_REFUSED:
                report = response.json() if response.status_code == 200 else {}
                if report.get("valid", True) or not report.get("problems"):
                    wrong.append(f"{case.name}: {response.status_code} {response.text[:300]}")
                continue
            try:
                check_problem(response, case.name)
                details.append(f"{case.name}: {response.status_code} {response.json()['detail']}")
            except AssertionError as exc:
                wrong.append(str(exc))

        assert not wrong, "\n".join(wrong)
        began = time.monotonic()
        check_problem(streamed_over_limit(client, key), "chunked over the limit")
        timings["chunked over the limit"] = time.monotonic() - began

        # A Content-Length far past the limit with a short body: refused on the header,
        # without waiting for bytes that will never come.
        head = (
            f"POST {WS}/workflows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {10**12}\r\n\r\n"
        ).encode()
        began = time.monotonic()
        answer = raw(server.port, head, b'{"definition": ')
        timings["Content-Length 10**12"] = time.monotonic() - began
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"application/problem+json" in answer, answer[:400]

        # A Content-Length smaller than what follows: the server reads what was announced
        # (not JSON here) and takes the rest for a next request, which is not HTTP.
        small = b'{"definition": {"name": "' + NAME.encode() + b'"'
        head = (
            f"POST {WS}/workflows HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(small)}\r\n\r\n"
        ).encode()
        answer = raw(server.port, head, small + b"x" * (2 * LIMIT))
        assert answer.split(b" ")[1][:1] == b"4", answer[:200]

        # what is not hostile still passes: a byte order mark before the JSON
        marked = b"\xef\xbb\xbf" + json.dumps({"definition": target}).encode()
        checked = client.post(f"{WS}/validate", content=marked, headers={**auth, **JSON})
        assert checked.status_code == 200 and checked.json()["valid"], checked.text[:300]

        # still healthy, and nothing of any of it was stored
        assert client.get("/readyz").status_code == 200
        listed = client.get(f"{WS}/workflows", headers=auth)
        assert [w["name"] for w in listed.json()["items"]] == [TARGET], listed.text[:300]
        executions = client.get(f"{WS}/executions", headers=auth)
        assert executions.json()["items"] == [], executions.text[:300]
    print("\n" + "\n".join(d[:200] for d in details))
    print("\nseconds per hostile body: " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    assert max(timings.values()) < PROMPT
    assert "Traceback" not in server.log_text(), server.log_text()


def test_the_cli_refuses_bad_files_with_exit_2(tmp_path: Path) -> None:
    files = {
        "bomb.yaml": bomb().encode(),
        "deep.yaml": f"name: x\nnodes: {DEEP}\n".encode(),
        "deep.json": f'{{"name": "x", "nodes": {DEEP}}}'.encode(),
        "latin1.yaml": "name: café\nnodes: []\n".encode("latin-1"),
        "nul.yaml": b"name: a\x00b\nnodes: []\n",
        "inf.json": definition("1e400")[len(b'{"definition": ') : -1],
        "digits.json": definition("9" * 5000)[len(b'{"definition": ') : -1],
        "nan.json": definition("NaN")[len(b'{"definition": ') : -1],
        "big.yaml": f"name: b\nnodes:\n  - {{id: a, type: x, config: {{n: {2**64}}}}}\n".encode(),
        "list.yaml": b"- a\n- b\n",
        "empty.yaml": b"",
        "cycle.yaml": (
            b"name: c\nnodes:\n  - {id: a, type: transform, needs: b, config: {output: 1}}\n"
            b"  - {id: b, type: transform, needs: a, config: {output: 1}}\n"
        ),
    }
    began = time.monotonic()
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        done = CliRunner().invoke(app, ["validate", str(path)])
        assert done.exit_code == 2, (name, done.exit_code, done.output[-2000:])
        assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
        message = done.output.strip()
        assert message.startswith(("error: ", "invalid definition: ")), (name, message[-2000:])
        assert "Traceback" not in message, message[-2000:]
    # the same bodies as an execution's input (``--input @file``), read before any database
    good = tmp_path / "good.yaml"
    good.write_text("name: g\nnodes:\n  - {id: a, type: transform, config: {output: 1}}\n")
    for name in ("deep.json", "latin1.yaml", "inf.json", "digits.json", "nan.json"):
        argument = f"@{tmp_path / name}"
        done = CliRunner().invoke(app, ["run", str(good), "--input", argument])
        assert done.exit_code == 2, (name, done.exit_code, done.output[-2000:])
        assert done.output.startswith("error: "), (name, done.output[-2000:])
    # and one in a real process, as a user runs it: a bomb once made it hang
    path = tmp_path / "bomb.yaml"
    real = subprocess.run(
        [sys.executable, "-c", "from conveyor.cli.main import main; main()", "validate", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert real.returncode == 2 and "expands to more than" in real.stderr, real.stderr[-2000:]
    print(f"\nthe CLI refused {len(files) + 1} bad files in {time.monotonic() - began:.1f}s")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_api_route_reads_json_bodies_strictly(conveyor: Conveyor) -> None:
    """A new router that forgot ``route_class=JsonRoute`` would take 1e400 and NUL again;
    webhooks read their raw bodies themselves (the signature is over the bytes)."""
    app = create_app(conveyor)
    routes = list(api_routes(app.routes))
    assert len(routes) > 50, "the route table is read wrongly"
    loose = [
        path
        for path, route in routes
        if route.methods & {"POST", "PUT", "PATCH", "DELETE"}
        and not isinstance(route, JsonRoute)
        and not path.startswith("/hooks/")
    ]
    assert loose == []
