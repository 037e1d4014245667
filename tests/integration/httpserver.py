"""A real local HTTP server for integration tests: flaky, slow and echo endpoints, with a
record of every request it received.

Endpoints (any method):

- ``/flaky?fail=N`` answers 503 to the first N calls carrying the same ``Idempotency-Key``
  header (calls without one share the key ``""``), then 200 with JSON
  ``{"ok": true, "calls": <calls so far for that key>, "query": {...}}``.
- ``/slow?seconds=S`` waits S seconds (default 30; cut short when the server stops), then
  answers JSON.
- ``/echo`` answers JSON with the method, path, query, headers and the parsed body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def idempotency_key(self) -> str | None:
        for name, value in self.headers.items():
            if name.lower() == "idempotency-key":
                return value
        return None


class LocalServer:
    """The server, its base URL and what it has seen; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._calls: dict[str, int] = {}
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="test-http-server", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path == path]

    def record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def count_call(self, key: str) -> int:
        with self._lock:
            self._calls[key] = self._calls.get(key, 0) + 1
            return self._calls[key]


def _handler_for(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _handle(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = ReceivedRequest(
                method=self.command,
                path=url.path,
                query=dict(parse_qsl(url.query)),
                headers=dict(self.headers.items()),
                body=body,
            )
            server.record(request)
            route = {"/flaky": self._flaky, "/slow": self._slow, "/echo": self._echo}.get(url.path)
            if route is None:
                self._send(404, {"error": f"no route {url.path}"})
            else:
                route(request)

        def _flaky(self, request: ReceivedRequest) -> None:
            calls = server.count_call(request.idempotency_key or "")
            if calls <= int(request.query.get("fail", "0")):
                self._send(503, {"error": "temporarily unavailable", "calls": calls})
            else:
                self._send(200, {"ok": True, "calls": calls, "query": request.query})

        def _slow(self, request: ReceivedRequest) -> None:
            seconds = float(request.query.get("seconds", "30"))
            server.stopping.wait(seconds)
            self._send(200, {"slept": seconds})

        def _echo(self, request: ReceivedRequest) -> None:
            try:
                parsed: Any = json.loads(request.body) if request.body else None
            except ValueError:
                parsed = request.body.decode("utf-8", "replace")
            self._send(
                200,
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query,
                    "headers": request.headers,
                    "json": parsed,
                },
            )

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                return

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    """A started :class:`LocalServer` on 127.0.0.1 (a free port), stopped afterwards."""
    server = LocalServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
