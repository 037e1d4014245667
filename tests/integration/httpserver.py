"""A real local HTTP server for integration tests: flaky, slow and echo endpoints, with a
record of every request it received.

Endpoints (any method):

- ``/flaky?fail=N`` answers 503 to the first N calls carrying the same ``Idempotency-Key``
  header (calls without one share the key ``""``), then 200 with JSON
  ``{"ok": true, "calls": <calls so far for that key>, "query": {...}}``.
- ``/slow?seconds=S`` waits S seconds (default 30; cut short when the server stops), then
  answers JSON.
- ``/echo`` answers JSON with the method, path, query, headers and the parsed body.
- ``/status?code=C&times=N&retry_after=S&form=seconds|date`` answers status C to the first N
  calls (default 1) carrying the same Idempotency-Key, with ``Retry-After: S`` (form date:
  an HTTP-date S seconds after the response's own Date header), then 200 like ``/echo``.
- ``/paged?page=P&pages=N&per=K&style=link|json`` answers page P (default 1) of N: JSON
  ``{"data": [...], "next": url-or-null}``; style link puts the list as the body and the
  next page in a ``Link: <...>; rel="next"`` header. Item ``i`` of page P is ``P*100+i``;
  ``base=URL`` points the next page's URL at another server.
- ``/redirect?to=URL&code=302`` redirects to URL (relative or absolute).
- ``/big?bytes=N&declare=1`` answers N bytes of text/plain; declare=0 sends no
  Content-Length (the body ends when the connection closes).
- ``/binary?bytes=N&type=image/png`` answers N deterministic bytes of that content type.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

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

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._calls: dict[str, int] = {}
        self.stopping = threading.Event()
        self._httpd = ThreadingHTTPServer((host, 0), _handler_for(self))
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


class _Handler(BaseHTTPRequestHandler):
    """The routes; ``server_state`` is set on a subclass per LocalServer (_handler_for)."""

    protocol_version = "HTTP/1.1"
    server_state: LocalServer

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
        self.server_state.record(request)
        route = {
            "/flaky": self._flaky,
            "/slow": self._slow,
            "/echo": self._echo,
            "/status": self._status,
            "/paged": self._paged,
            "/redirect": self._redirect,
            "/big": self._big,
            "/binary": self._binary,
        }.get(url.path)
        if route is None:
            self._send(404, {"error": f"no route {url.path}"})
        else:
            route(request)

    def _flaky(self, request: ReceivedRequest) -> None:
        calls = self.server_state.count_call(request.idempotency_key or "")
        if calls <= int(request.query.get("fail", "0")):
            self._send(503, {"error": "temporarily unavailable", "calls": calls})
        else:
            self._send(200, {"ok": True, "calls": calls, "query": request.query})

    def _slow(self, request: ReceivedRequest) -> None:
        seconds = float(request.query.get("seconds", "30"))
        self.server_state.stopping.wait(seconds)
        self._send(200, {"slept": seconds})

    def _echo(self, request: ReceivedRequest) -> None:
        self._send(200, _echoed(request))

    def _status(self, request: ReceivedRequest) -> None:
        calls = self.server_state.count_call(f"status:{request.idempotency_key or ''}")
        if calls > int(request.query.get("times", "1")):
            self._send(200, {**_echoed(request), "calls": calls})
            return
        now = int(time.time())
        headers = {"Date": formatdate(now, usegmt=True)}
        after = request.query.get("retry_after")
        if after is not None and request.query.get("form") == "date":
            headers["Retry-After"] = formatdate(now + int(after), usegmt=True)
        elif after is not None:
            headers["Retry-After"] = after
        code = int(request.query.get("code", "500"))
        self._send(code, {"error": f"status {code}", "calls": calls}, headers)

    def _paged(self, request: ReceivedRequest) -> None:
        page = int(request.query.get("page", "1"))
        pages = int(request.query.get("pages", "3"))
        per = int(request.query.get("per", "2"))
        items = [page * 100 + i for i in range(per)]
        query = {**request.query, "page": str(page + 1)}
        base = request.query.get("base", self.server_state.base_url)
        following = f"{base}/paged?{urlencode(query)}" if page < pages else None
        if request.query.get("style") == "link":
            headers = {"Link": f'<{following}>; rel="next"'} if following else {}
            self._send(200, items, headers)
        else:
            self._send(200, {"data": items, "next": following})

    def _redirect(self, request: ReceivedRequest) -> None:
        code = int(request.query.get("code", "302"))
        self._send(code, {"to": request.query["to"]}, {"Location": request.query["to"]})

    def _big(self, request: ReceivedRequest) -> None:
        size = int(request.query.get("bytes", "1024"))
        declare = request.query.get("declare", "1") != "0"
        self._send_bytes(200, b"x" * size, "text/plain", {}, declare=declare)

    def _binary(self, request: ReceivedRequest) -> None:
        size = int(request.query.get("bytes", "256"))
        kind = request.query.get("type", "application/octet-stream")
        self._send_bytes(200, bytes(i % 256 for i in range(size)), kind, {})

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None,
        *,
        declare: bool = True,
    ) -> None:
        extra = headers or {}
        try:
            self.send_response_only(status)
            self.send_header("Server", "conveyor-test")
            if "Date" not in extra:
                self.send_header("Date", self.date_time_string())
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            if declare:
                self.send_header("Content-Length", str(len(data)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            return

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


def _handler_for(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"server_state": server})


def _echoed(request: ReceivedRequest) -> dict[str, Any]:
    try:
        parsed: Any = json.loads(request.body) if request.body else None
    except ValueError:
        parsed = request.body.decode("utf-8", "replace")
    return {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": request.headers,
        "json": parsed,
    }


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    """A started :class:`LocalServer` on 127.0.0.1 (a free port), stopped afterwards."""
    server = LocalServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
