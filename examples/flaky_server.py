"""A flaky HTTP endpoint for examples/flaky-endpoint-retries.yaml (standard library only).

    python examples/flaky_server.py [--port 8000] [--host 127.0.0.1]

``GET /flaky?fail=N`` answers 503 to the first N requests that carry the same
``Idempotency-Key`` header, then 200 with JSON ``{"ok": true, "calls": <requests seen with
that key>, "query": {...}}``. Every attempt of one step carries the same key, so one
execution sees N failures and then a success; the next execution starts counting afresh.
Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_calls: dict[str, int] = {}
_lock = threading.Lock()


def count_call(key: str) -> int:
    with _lock:
        _calls[key] = _calls.get(key, 0) + 1
        return _calls[key]


class FlakyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/flaky":
            self._send(404, {"error": f"no route {url.path}; try /flaky?fail=2"})
            return
        query = dict(parse_qsl(url.query))
        calls = count_call(self.headers.get("Idempotency-Key", ""))
        if calls <= int(query.get("fail", "0")):
            self._send(503, {"error": "temporarily unavailable", "calls": calls})
        else:
            self._send(200, {"ok": True, "calls": calls, "query": query})

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description="A flaky HTTP endpoint: 503 N times, then 200.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), FlakyHandler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    # The first line says where to point the example (and, for its test, that it is ready).
    sys.stdout.write(f"serving http://{host!s}:{port}/flaky (Ctrl-C stops)\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
