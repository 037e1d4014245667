"""The code node type on its own, with real sandboxed processes (bubblewrap) and, where the
operator allows it, bare ones: results, errors, and every limit reported as a step error."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import NodeError
from conveyor.nodes.base import NetworkPolicy, NodeContext
from conveyor.nodes.code import Code, CodeConfig
from tests.support import require_bubblewrap

CANARY = "canary-secret-7f3a9c"


class NoServices:
    async def notify(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        raise AssertionError("a code node notifies nobody")

    async def start_child(self, *args: Any) -> str:
        raise AssertionError("a code node starts no child")


def context(network: NetworkPolicy | None = None) -> NodeContext:
    return NodeContext(
        execution_id="e1",
        workflow_id="w1",
        node_id="snippet",
        attempt=1,
        services=NoServices(),
        clock=lambda: datetime.now(UTC),
        network=network or NetworkPolicy(),
    )


@pytest.fixture(scope="module")
def sandboxed() -> Code:
    require_bubblewrap()
    return Code()


async def run(
    node: Code, code: str, input: Any = None, ctx: NodeContext | None = None, **limits: Any
) -> Any:
    config = CodeConfig(code=code, input=input, **limits)
    return await asyncio.wait_for(node.run(ctx or context(), config), timeout=60)


async def fails(node: Code, code: str, input: Any = None, **limits: Any) -> str:
    with pytest.raises(NodeError) as caught:
        await run(node, code, input, **limits)
    assert caught.value.non_retryable
    return caught.value.message


async def test_main_returns_the_transformed_input_and_prints_become_log_lines(
    sandboxed: Code,
) -> None:
    ctx = context()
    code = (
        "def main(input):\n"
        "    print('adding', len(input['items']))\n"
        "    return {'total': sum(input['items'])}\n"
    )
    assert await run(sandboxed, code, {"items": [1, 2, 39]}, ctx) == {"total": 42}
    assert [line["message"] for line in ctx.log.lines] == ["adding 3"]


async def test_a_syntax_error_names_the_line(sandboxed: Code) -> None:
    message = await fails(sandboxed, "def main(input)\n    return 1\n")
    assert message.startswith("the code has a syntax error: expected ':' (line 1")


async def test_an_exception_shows_the_snippets_lines_only(sandboxed: Code) -> None:
    message = await fails(sandboxed, "def main(input):\n    return input['n'] / 0\n", {"n": 1})
    assert message.startswith("the code raised an exception")
    assert 'File "<code>", line 2, in main' in message
    assert "ZeroDivisionError: division by zero" in message
    assert "bootstrap" not in message and "conveyor" not in message


async def test_without_main_the_step_says_what_is_missing(sandboxed: Code) -> None:
    assert await fails(sandboxed, "x = 1\n") == "the code must define main(input)"


async def test_an_infinite_loop_hits_the_cpu_limit(sandboxed: Code) -> None:
    message = await fails(
        sandboxed, "def main(input):\n    while True:\n        pass\n", cpu_seconds=1, timeout=45
    )
    assert message == "CPU time limit of 1s exceeded (cpu_seconds)"


async def test_a_sleeping_snippet_hits_the_wall_clock(sandboxed: Code) -> None:
    code = "import time\ndef main(input):\n    time.sleep(600)\n"
    assert await fails(sandboxed, code, timeout=1) == "wall-clock timeout of 1s exceeded"


async def test_a_memory_bomb_hits_the_memory_limit(sandboxed: Code) -> None:
    code = (
        "def main(input):\n"
        "    hoard = []\n"
        "    while True:\n"
        "        hoard.append(bytearray(10_000_000))\n"
    )
    message = await fails(sandboxed, code, memory_mb=128)
    assert message.startswith("memory limit of 128 MB exceeded (memory_mb)")


async def test_a_fork_bomb_hits_the_process_limit(sandboxed: Code) -> None:
    code = "import os\ndef main(input):\n    while True:\n        os.fork()\n"
    message = await fails(sandboxed, code, timeout=30)
    assert message.startswith("process limit of 32 reached (a fork bomb?)")


async def test_host_files_are_invisible(sandboxed: Code, tmp_path: Path) -> None:
    database = tmp_path / "conveyor.db"
    database.write_bytes(b"SQLite format 3\x00")
    outside = tmp_path / "private.txt"
    outside.write_text("host secret")
    code = (
        "def main(input):\n"
        "    found = {}\n"
        "    for path in input:\n"
        "        try:\n"
        "            found[path] = open(path).read()\n"
        "        except OSError as exc:\n"
        "            found[path] = type(exc).__name__\n"
        "    return found\n"
    )
    paths = [
        str(database),
        str(outside),
        "/etc/passwd",
        str(Path.home() / ".bashrc"),
        os.getcwd() + "/pyproject.toml",
    ]
    found = await run(sandboxed, code, paths)
    assert found == dict.fromkeys(paths, "FileNotFoundError")
    message = await fails(
        sandboxed, "def main(input):\n    return open(input, 'rb').read(16).hex()\n", str(database)
    )
    assert "FileNotFoundError" in message


async def test_the_workers_environment_is_invisible(
    sandboxed: Code, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_SECRET_KEY", CANARY)
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", f"postgresql://user:{CANARY}@db/conveyor")
    code = (
        "import os\n"
        "def main(input):\n"
        "    seen = [repr(dict(os.environ))]\n"
        "    for pid in os.listdir('/proc'):\n"
        "        if pid.isdigit():\n"
        "            try:\n"
        "                seen.append(open(f'/proc/{pid}/environ', 'rb').read().decode())\n"
        "            except OSError:\n"
        "                pass\n"
        "    return seen\n"
    )
    seen = await run(sandboxed, code)
    assert CANARY not in repr(seen)
    assert "CONVEYOR" not in repr(seen)


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


CONNECT = (
    "import socket\n"
    "def main(input):\n"
    "    socket.create_connection(('127.0.0.1', input), timeout=5).close()\n"
    "    return 'connected'\n"
)


async def test_sockets_reach_nothing_without_allow_network(
    sandboxed: Code, listener: Listener
) -> None:
    message = await fails(sandboxed, CONNECT, listener.port)
    assert message.startswith("network is disabled for code nodes")
    assert listener.accepted == 0


async def test_allow_network_needs_an_install_that_allows_private_addresses(
    sandboxed: Code, listener: Listener
) -> None:
    config = CodeConfig(code=CONNECT, input=listener.port, allow_network=True)
    with pytest.raises(NodeError, match="CONVEYOR_ALLOW_PRIVATE_NETWORK=true"):
        await sandboxed.run(context(), config)
    trusted = context(NetworkPolicy(allow_private=True))
    assert await sandboxed.run(trusted, config) == "connected"
    assert listener.accepted == 1


async def test_output_over_the_limit_fails_the_step(sandboxed: Code) -> None:
    code = "def main(input):\n    return 'x' * 5000\n"
    message = await fails(sandboxed, code, max_output_bytes=1000)
    assert message == "output larger than 1000 bytes (max_output_bytes)"


async def test_output_that_is_not_json_fails_the_step(sandboxed: Code) -> None:
    message = await fails(sandboxed, "def main(input):\n    return {1, 2}\n")
    assert message.startswith("main(input) returned a value that is not JSON")


async def test_endless_printing_is_kept_bounded(sandboxed: Code) -> None:
    ctx = context()
    code = (
        "import sys\ndef main(input):\n    sys.stdout.write('y' * 5_000_000)\n    return 'done'\n"
    )
    assert await run(sandboxed, code, ctx=ctx) == "done"
    assert sum(len(line["message"]) for line in ctx.log.lines) < 100_000
    assert ctx.log.lines[-1]["message"].endswith("bytes of printed output dropped")


async def test_without_a_sandbox_code_nodes_are_refused() -> None:
    missing = Code(sandbox="/nonexistent/bwrap")
    message = await fails(missing, "def main(input):\n    return 1\n")
    assert "code nodes are refused on this worker" in message
    assert "apt-get install bubblewrap" in message
    assert "CONVEYOR_ALLOW_UNSANDBOXED_CODE=true" in message


async def test_an_operator_may_allow_unsandboxed_code_with_limits() -> None:
    bare = Code(sandbox="/nonexistent/bwrap", allow_unsandboxed=True)
    ctx = context()
    assert await run(bare, "def main(input):\n    return input * 2\n", 21, ctx) == 42
    assert ctx.log.lines[0]["level"] == "warning"
    assert "no sandbox" in ctx.log.lines[0]["message"]
    loop = "def main(input):\n    while True:\n        pass\n"
    assert (
        await fails(bare, loop, cpu_seconds=1, timeout=45)
        == "CPU time limit of 1s exceeded (cpu_seconds)"
    )
    bomb = "import os\ndef main(input):\n    while True:\n        os.fork()\n"
    assert (await fails(bare, bomb, timeout=30)).startswith("process limit of 32 reached")
    code = "import os\ndef main(input):\n    return sorted(os.environ)\n"
    assert not [name for name in await run(bare, code) if name.startswith("CONVEYOR")]


def test_the_operator_switch_reaches_the_code_node(monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.cli.base import registry_for

    monkeypatch.delenv("CONVEYOR_ALLOW_UNSANDBOXED_CODE", raising=False)
    refusing = registry_for([], False).get("code")
    assert isinstance(refusing, Code) and not refusing.sandbox.allow_unsandboxed
    monkeypatch.setenv("CONVEYOR_ALLOW_UNSANDBOXED_CODE", "true")
    allowing = registry_for([], False).get("code")
    assert isinstance(allowing, Code) and allowing.sandbox.allow_unsandboxed


async def test_a_cancelled_step_kills_its_snippet(sandboxed: Code) -> None:
    # An odd CPU limit marks this test's processes (it is on their command line): bubblewrap
    # and the interpreter inside it, seen from the host's /proc.
    marker = b'"cpu_seconds": 317'
    code = "import time\ndef main(input):\n    time.sleep(600)\n"
    task = asyncio.create_task(run(sandboxed, code, timeout=600, cpu_seconds=317))
    deadline = asyncio.get_running_loop().time() + 30
    while len(_processes_with(marker)) < 2:
        assert asyncio.get_running_loop().time() < deadline, "the snippet never started"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = asyncio.get_running_loop().time() + 10
    while _processes_with(marker):
        assert asyncio.get_running_loop().time() < deadline, "the snippet outlived its step"
        await asyncio.sleep(0.05)


def _processes_with(marker: bytes) -> list[int]:
    """Live (not zombie) processes whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry))
    return found


KILLED_WORKER = """
import asyncio, sys
from datetime import UTC, datetime
from conveyor.nodes.base import NodeContext
from conveyor.nodes.code import Code, CodeConfig
from tests.support import require_bubblewrap

async def main():
    ctx = NodeContext("e", "w", "n", 1, services=None, clock=lambda: datetime.now(UTC))
    code = "import time\\ndef main(input):\\n    time.sleep(600)\\n"
    node = Code(sandbox=sys.argv[2] or None, allow_unsandboxed=True)
    await node.run(ctx, CodeConfig(code=code, timeout=600, cpu_seconds=int(sys.argv[1])))

asyncio.run(main())
"""


@pytest.mark.parametrize("sandbox", ["bwrap", ""], ids=["sandboxed", "unsandboxed"])
async def test_a_snippet_never_outlives_a_killed_worker(sandbox: str) -> None:
    if sandbox:
        require_bubblewrap()
    cpu = "319" if sandbox else "323"
    marker = f'"cpu_seconds": {cpu}'.encode()
    worker = await asyncio.create_subprocess_exec(sys.executable, "-c", KILLED_WORKER, cpu, sandbox)
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(_processes_with(marker)) < (2 if sandbox else 1):
            assert asyncio.get_running_loop().time() < deadline, "the snippet never started"
            await asyncio.sleep(0.05)
    finally:
        worker.kill()
        await worker.wait()
    deadline = asyncio.get_running_loop().time() + 10
    while _processes_with(marker):
        assert asyncio.get_running_loop().time() < deadline, "the snippet outlived its worker"
        await asyncio.sleep(0.05)


async def test_only_the_standard_library_is_importable(sandboxed: Code) -> None:
    code = "import json, re, datetime\ndef main(input):\n    import pydantic\n"
    message = await fails(sandboxed, code)
    assert "ModuleNotFoundError: No module named 'pydantic'" in message


async def test_files_the_snippet_writes_are_bounded(sandboxed: Code) -> None:
    code = (
        "def main(input):\n"
        "    with open('/tmp/scratch', 'wb') as f:\n"
        "        f.write(b'x' * 1000)\n"
        "    with open('/tmp/big', 'wb') as f:\n"
        "        f.write(b'x' * 20_000_000)\n"
    )
    message = await fails(sandboxed, code)
    assert message.endswith("OSError: [Errno 27] File too large")


async def test_without_a_sandbox_a_refused_connection_is_the_snippets_own() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the connection is refused
    bare = Code(sandbox=None, allow_unsandboxed=True)
    # A bytes address: a root worker's snippet runs as nobody, who may not be able to
    # import the idna codec from a Python installed under /root.
    code = "import socket\ndef main(input):\n    socket.socket().connect((b'127.0.0.1', input))\n"
    message = await fails(bare, code, port)
    assert message.startswith("the code raised an exception")
    assert "ConnectionRefusedError" in message


ESCAPES = """
import os, signal, ctypes
def attempt(report, name, action):
    try:
        report[name] = ['done', repr(action())[:200]]
    except BaseException as exc:
        report[name] = [type(exc).__name__, str(exc)[:200]]

def main(input):
    report = {}
    for path in input['read']:
        attempt(report, 'read ' + path, lambda: open(path, 'rb').read(64))
    for path in input['write']:
        attempt(report, 'write ' + path, lambda: open(path, 'wb').write(b'pwned'))
    attempt(report, 'kill victim', lambda: os.kill(input['victim'], signal.SIGKILL))
    attempt(report, 'kill worker', lambda: os.kill(input['worker'], signal.SIGKILL))
    attempt(report, 'kill parent', lambda: os.kill(os.getppid(), signal.SIGKILL))
    attempt(report, 'setuid root', lambda: os.setuid(0))
    attempt(report, 'uid', lambda: os.getuid())
    report['pids'] = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
    libc = ctypes.CDLL(None, use_errno=True)
    report['mount'] = libc.mount(b'none', b'/usr', b'tmpfs', 0, None)
    report['ptrace worker'] = libc.ptrace(16, input['worker'], None, None)  # PTRACE_ATTACH
    return report
"""


def _exists(path: str) -> bool:
    return os.path.exists(path)


async def test_escapes_from_the_sandbox_reach_nothing_on_the_host(
    sandboxed: Code, tmp_path: Path
) -> None:
    """Reading the host's secrets (shadow file, the Conveyor database and its key file, the
    worker's environment and memory), writing outside the sandbox's own /tmp, signalling
    the worker or another process of the host, becoming root, mounting, tracing: each
    fails inside the snippet, and the host is untouched afterwards."""
    database = tmp_path / "conveyor.db"
    database.write_bytes(b"SQLite format 3\x00")
    key = tmp_path / "conveyor.db.key"
    key.write_text(CANARY)
    victim = await asyncio.create_subprocess_exec("sleep", "120")
    worker = os.getpid()
    written = [
        str(tmp_path / "pwned"),
        "/etc/pwned",
        "/usr/pwned",
        "/pwned",
        str(Path.home() / "pwned"),
    ]
    reads = [
        "/etc/shadow",
        str(database),
        str(key),
        str(Path.home() / ".config/conveyor/secret.key"),
        f"/proc/{worker}/environ",
        f"/proc/{worker}/mem",
        "/proc/1/environ",
    ]
    try:
        report = await run(
            sandboxed,
            ESCAPES,
            {"read": reads, "write": written, "victim": victim.pid, "worker": worker},
        )
        assert victim.returncode is None, "the snippet killed a host process"
    finally:
        victim.kill()
        await victim.wait()
    print(report)
    for path in reads:
        assert report[f"read {path}"][0] in ("FileNotFoundError", "PermissionError"), path
    for path in written:
        assert report[f"write {path}"][0] in ("OSError", "FileNotFoundError", "PermissionError")
    assert not [path for path in written if _exists(path)]
    # The host's processes do not exist in the snippet's PID namespace.
    assert report["kill victim"][0] == "ProcessLookupError"
    assert report["kill worker"][0] == "ProcessLookupError"
    assert report["setuid root"][0] == "PermissionError"
    assert report["uid"] != ["done", "0"]
    pids = report["pids"]
    assert victim.pid not in pids and worker not in pids and max(pids) < 100
    assert report["mount"] == -1  # refused, nothing mounted
    assert report["ptrace worker"] == -1
    assert CANARY not in repr(report)
