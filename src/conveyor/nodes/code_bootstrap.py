"""The program a code node's sandboxed interpreter runs (``python -I -S -c <this file>``).

Standard library only, never imported by Conveyor: it reads ``{"code", "input"}`` as JSON
on stdin's first line (the worker keeps stdin open; when it closes, this process ends, so a
snippet never outlives a killed worker), gives up root (to the ``nobody`` user), sets its
resource limits, runs the snippet's ``main(input)`` and writes one JSON envelope to the
original stdout: ``{"ok": true, "output": ...}`` or ``{"ok": false, "kind": ...,
"message": ...}``. Everything the snippet prints goes to stderr, which the worker keeps as
step log lines.
"""

from __future__ import annotations

import errno
import json
import linecache
import os
import resource
import socket
import sys
import threading
import traceback
from typing import Any

FILENAME = "<code>"
NOBODY = 65534
_NETWORK_ERRNOS = (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH)


def _drop_root() -> None:
    """RLIMIT_NPROC does not bind root, so a fork bomb is only bounded as another user."""
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


def _limit(limits: dict[str, int]) -> None:
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    memory = limits["memory_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def _snippet_traceback(exc: BaseException) -> str:
    """The traceback's frames in the snippet only (never the bootstrap's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILENAME]
    lines = ["Traceback (snippet lines only):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def _classify(exc: BaseException, network: bool) -> str:
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN:
        return "processes"
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return "processes"
    # Without a network, a refused or unreachable connection can only be the sandbox's.
    if not network and (
        isinstance(exc, socket.gaierror)
        or (isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS)
    ):
        return "network"
    return "exception"


def _run(request: dict[str, Any]) -> dict[str, Any]:
    source = request["code"]
    linecache.cache[FILENAME] = (len(source), None, source.splitlines(True), FILENAME)
    try:
        compiled = compile(source, FILENAME, "exec")
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        text = f": {exc.text.strip()}" if exc.text else ""
        return {"ok": False, "kind": "syntax", "message": f"{exc.msg} ({where}){text}"}
    namespace: dict[str, Any] = {"__name__": "__snippet__"}
    exec(compiled, namespace)  # noqa: S102 - running the snippet is this program's purpose
    main = namespace.get("main")
    if not callable(main):
        return {"ok": False, "kind": "contract", "message": "the code must define main(input)"}
    return {"ok": True, "output": main(request["input"])}


def _envelope(request: dict[str, Any], limits: dict[str, int]) -> dict[str, Any]:
    try:
        return _run(request)
    except BaseException as exc:  # every failure of the snippet is reported
        kind = _classify(exc, bool(limits["network"]))
        return {"ok": False, "kind": kind, "message": _snippet_traceback(exc)}


def _encode(envelope: dict[str, Any], limit: int) -> bytes:
    try:
        data = json.dumps(envelope, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        message = f"main(input) returned a value that is not JSON: {exc}"
        data = json.dumps({"ok": False, "kind": "output", "message": message}).encode()
    except MemoryError:
        data = json.dumps({"ok": False, "kind": "memory", "message": "MemoryError"}).encode()
    if len(data) > limit:
        message = f"{len(data)} bytes"
        data = json.dumps({"ok": False, "kind": "too_large", "message": message}).encode()
    return data


def _watch_the_worker(stop: Any = os._exit) -> None:
    """The worker keeps stdin open while it waits; end when it closes (the worker died)."""

    def watch() -> None:
        while os.read(0, 4096):
            pass
        stop(0)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    limits = json.loads(sys.argv[1])
    request = json.loads(sys.stdin.buffer.readline())
    _watch_the_worker()
    result = os.dup(1)
    os.dup2(2, 1)  # the snippet's prints (and its children's) go to the log channel
    sys.stdout = sys.stderr
    _drop_root()
    _limit(limits)
    me = os.getpid()
    envelope = _envelope(request, limits)
    if os.getpid() != me:
        os._exit(0)  # a process the snippet forked never reports
    data = _encode(envelope, limits["max_output_bytes"])
    sys.stderr.flush()
    while data:
        data = data[os.write(result, data) :]
    os._exit(0)  # without waiting for threads the snippet left running


if __name__ == "__main__":
    main()
