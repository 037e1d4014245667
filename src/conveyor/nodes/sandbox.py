"""The sandbox a code node's snippet runs in: a separate Python process under bubblewrap
(its own mount, PID, IPC and network namespaces, only the interpreter's files visible, an
empty environment), with resource limits set inside it; without bubblewrap, only when the
operator allows it, a bare process with the same limits and environment."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from conveyor.errors import NodeError

log = logging.getLogger(__name__)

BOOTSTRAP = (Path(__file__).with_name("code_bootstrap.py")).read_text()
PATH = "/usr/bin:/bin"
# The sandbox's own /tmp, a fresh tmpfs (not the host's).
TMP = "/tmp"  # noqa: S108
PROBE_TIMEOUT = 30.0
# What the probe runs inside: the bootstrap's first act as root is to become nobody.
PROBE = "import os\nif os.getuid() == 0: os.setgroups([]); os.setgid(65534); os.setuid(65534)"
# After the snippet's process ends, how long its pipes may stay open (a forked child).
DRAIN_SECONDS = 2.0
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and make sure it can "
    "create namespaces, or set CONVEYOR_ALLOW_UNSANDBOXED_CODE=true to run code nodes with "
    "resource limits only (no isolation from the host's files and network)"
)


@dataclass(frozen=True)
class Limits:
    """What one snippet may use. ``processes`` bounds fork bombs; ``file_bytes`` bounds
    each file it writes (into its own small /tmp); ``log_bytes`` what it may print."""

    timeout: timedelta
    cpu_seconds: int
    memory_mb: int
    max_output_bytes: int
    network: bool = False
    processes: int = 32
    file_bytes: int = 16 * 1024 * 1024
    open_files: int = 64
    log_bytes: int = 64 * 1024
    tmp_bytes: int = 32 * 1024 * 1024

    def for_bootstrap(self) -> str:
        return json.dumps(
            {
                "cpu_seconds": self.cpu_seconds,
                "memory_mb": self.memory_mb,
                "processes": self.processes,
                "file_bytes": self.file_bytes,
                "open_files": self.open_files,
                # Room for the envelope around the output.
                "max_output_bytes": self.max_output_bytes + 64,
                "network": self.network,
            }
        )


@dataclass
class Finished:
    """How a snippet's process ended. ``signal``: the signal that ended it, when one did;
    ``timed_out`` and ``overflowed``: the worker killed it (wall clock, output size)."""

    exit_code: int | None
    signal: int | None
    result: bytes
    log: bytes
    log_dropped: int = 0
    timed_out: bool = False
    overflowed: bool = False

    def envelope(self) -> dict[str, Any] | None:
        if self.overflowed or not self.result:
            return None
        try:
            found = json.loads(self.result)
        except ValueError:
            return None
        return found if isinstance(found, dict) and "ok" in found else None


def interpreter() -> str:
    """The worker's own interpreter, outside any virtualenv (whose packages stay hidden)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidate = Path(sys.base_prefix, "bin", version)
    return str(candidate) if candidate.exists() else os.path.realpath(sys.executable)


class Sandbox:
    """Runs snippets. ``command``: the bubblewrap executable (None or a missing path: no
    sandbox); ``allow_unsandboxed``: without one, run anyway with limits only (the
    operator's explicit choice, CONVEYOR_ALLOW_UNSANDBOXED_CODE)."""

    def __init__(self, command: str | None = "bwrap", *, allow_unsandboxed: bool = False) -> None:
        self.command = command
        self.allow_unsandboxed = allow_unsandboxed
        self.python = interpreter()
        self._problem: str | None = None
        self._probed = False

    async def sandboxed(self) -> bool:
        """Whether snippets run under bubblewrap (probed once); without it, and without the
        operator's permission, a non-retryable NodeError that says how to fix it. (Two
        first steps at once may both probe: harmless, and no lock ties this to one loop.)"""
        if not self._probed:
            self._problem = await self._probe()
            self._probed = True
            if self._problem:
                extra = {"action": "code_sandbox_unavailable"}
                log.warning("code sandbox unavailable: %s", self._problem, extra=extra)
        if self._problem is None:
            return True
        if self.allow_unsandboxed:
            return False
        raise NodeError(
            f"code nodes are refused on this worker: {self._problem}; {INSTALL_HINT}",
            non_retryable=True,
        )

    async def _probe(self) -> str | None:
        found = shutil.which(self.command) if self.command else None
        if found is None:
            return f"no sandbox: bubblewrap ({self.command or 'bwrap'}) is not installed"
        self.command = found
        argv = [*self._bwrap_argv(network=False), self.python, "-I", "-S", "-c", PROBE]
        try:
            done = await _execute(argv, b"", _probe_limits(), env={}, cwd=None, wrapped=True)
        except OSError as exc:
            return f"bubblewrap ({found}) cannot be started: {exc}"
        if done.exit_code != 0:
            said = done.log.decode(errors="replace").strip()[-500:]
            return f"bubblewrap ({found}) does not work here (exit {done.exit_code}): {said}"
        return None

    async def run(self, request: dict[str, Any], limits: Limits, *, sandboxed: bool) -> Finished:
        stdin = json.dumps(request).encode() + b"\n"
        if sandboxed:
            boot = [self.python, "-I", "-S", "-c", BOOTSTRAP, limits.for_bootstrap()]
            argv = self._bwrap_argv(network=limits.network, tmp_bytes=limits.tmp_bytes) + boot
            return await _execute(argv, stdin, limits, env={}, cwd=None, wrapped=True)
        # Nothing stops its connections, so none is reported as the sandbox's refusal.
        limits = replace(limits, network=True)
        boot = [self.python, "-I", "-S", "-c", BOOTSTRAP, limits.for_bootstrap()]
        with tempfile.TemporaryDirectory(prefix="conveyor-code-") as folder:
            if os.getuid() == 0:
                os.chmod(folder, 0o1777)  # the snippet runs as nobody  # noqa: S103
            return await _execute(
                boot, stdin, limits, env={"PATH": PATH}, cwd=folder, wrapped=False
            )

    def _bwrap_argv(self, *, network: bool, tmp_bytes: int = 1024 * 1024) -> list[str]:
        assert self.command is not None
        argv = [self.command, *_namespaces(network), "--die-with-parent", "--new-session"]
        argv += _binds(self.python, network)
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", TMP]
        argv += ["--chdir", TMP, "--clearenv", "--setenv", "PATH", PATH]
        return argv


def _namespaces(network: bool) -> list[str]:
    if os.getuid() == 0:
        # As root bubblewrap makes no user namespace, and RLIMIT_NPROC never binds uid 0:
        # the bootstrap changes to nobody, which needs these two capabilities (and then
        # holds none).
        found = ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
        found += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return found if network else [*found, "--unshare-net"]
    return ["--unshare-all", "--share-net"] if network else ["--unshare-all"]


def _binds(python: str, network: bool) -> list[str]:
    """Read-only: /usr and the top-level links into it, the interpreter's prefix; with a
    network, the few files name resolution and TLS read. Nothing else of the host."""
    argv = ["--ro-bind", "/usr", "/usr"]
    shown = ["/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
            shown.append(top)
    made: set[str] = set()
    for root in sorted({sys.base_prefix, os.path.dirname(python)}):
        if any(root == s or root.startswith(s + "/") for s in shown):
            continue
        for parent in reversed(Path(root).parents[:-1]):
            if str(parent) not in made:
                made.add(str(parent))
                argv += ["--perms", "0755", "--dir", str(parent)]
        argv += ["--ro-bind", root, root]
        shown.append(root)
    if network:
        for path in ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl"):
            argv += ["--ro-bind-try", path, path]
    return argv


def _probe_limits() -> Limits:
    return Limits(
        timeout=timedelta(seconds=PROBE_TIMEOUT), cpu_seconds=10, memory_mb=256, max_output_bytes=0
    )


@dataclass
class _Reading:
    kept: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)


async def _read(stream: asyncio.StreamReader, keep: int, reading: _Reading, stop: bool) -> None:
    """Keep the first ``keep`` bytes; past them, stop (``stop``) or drain and count."""
    while chunk := await stream.read(65536):
        room = keep - len(reading.kept)
        reading.kept += chunk[: max(room, 0)]
        if len(chunk) > room:
            reading.dropped += len(chunk) - max(room, 0)
            if stop:
                reading.overflowed.set()
                return


async def _execute(
    argv: list[str],
    stdin: bytes,
    limits: Limits,
    *,
    env: dict[str, str],
    cwd: str | None,
    wrapped: bool,
) -> Finished:
    """Run ``argv`` (``wrapped``: under bubblewrap) fed ``stdin``; kill its process group
    at the wall-clock limit or when its result outgrows the output limit."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    assert process.stdin and process.stdout and process.stderr
    result, printed = _Reading(), _Reading()
    readers = [
        asyncio.create_task(_read(process.stdout, limits.max_output_bytes + 64, result, True)),
        asyncio.create_task(_read(process.stderr, limits.log_bytes, printed, False)),
    ]
    feeder = asyncio.create_task(_feed(process.stdin, stdin))
    timed_out = False
    waiter = asyncio.ensure_future(process.wait())
    overflow = asyncio.ensure_future(result.overflowed.wait())
    try:
        done, _ = await asyncio.wait(
            {waiter, overflow},
            timeout=limits.timeout.total_seconds(),
            return_when=asyncio.FIRST_COMPLETED,
        )
        timed_out = not done
        _kill(process)
        await asyncio.wait([waiter, *readers], timeout=DRAIN_SECONDS)
    finally:
        _kill(process)
        for task in [waiter, overflow, *readers, feeder]:
            task.cancel()
        process.stdin.close()
    code = process.returncode
    return Finished(
        exit_code=code,
        signal=_signal_of(code, wrapped=wrapped),
        result=bytes(result.kept),
        log=bytes(printed.kept),
        log_dropped=printed.dropped,
        timed_out=timed_out,
        overflowed=result.overflowed.is_set(),
    )


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    """Write the request and keep stdin open: the bootstrap ends when it closes."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(data)
        await stream.drain()


def _kill(process: asyncio.subprocess.Process) -> None:
    """The whole process group: bubblewrap's death takes its PID namespace with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _signal_of(code: int | None, *, wrapped: bool) -> int | None:
    if code is None:
        return None
    if code < 0:
        return -code
    # bubblewrap exits with 128 + n when the sandboxed process died of signal n.
    return code - 128 if wrapped and code > 128 else None
