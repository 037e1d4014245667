"""The side-effect ledger: a loopback HTTP server that the tests' workflows call (with the
built-in ``http.request`` node, which sends the step's idempotency key), recording every
call, so "at most once", "at least once, one key" and "never after commit" are checked on
what actually reached the outside world rather than on the engine's own rows.

``POST /effect?sleep=S`` records the call when it arrives, then answers after ``S`` seconds
(a step that is in flight long enough to be killed in the middle).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from sqlalchemy import select

from conveyor.store import Database
from conveyor.store.tables import steps


@dataclass(frozen=True)
class Effect:
    key: str  # the Idempotency-Key header
    body: dict[str, Any]
    at: float  # time.time() on arrival


class Ledger:
    def __init__(self) -> None:
        self.effects: list[Effect] = []
        self._lock = threading.Lock()
        ledger = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.time()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                with ledger._lock:
                    ledger.effects.append(
                        Effect(self.headers.get("Idempotency-Key", ""), json.loads(raw), arrived)
                    )
                    count = len(ledger.effects)
                sleep = float(parse_qs(urlparse(self.path).query).get("sleep", ["0"])[0])
                time.sleep(sleep)
                answer = json.dumps({"recorded": count}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/effect"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def by_key(self) -> dict[str, list[Effect]]:
        with self._lock:
            grouped: dict[str, list[Effect]] = defaultdict(list)
            for effect in self.effects:
                grouped[effect.key].append(effect)
            return dict(grouped)

    def node(self, node_id: str, sleep: float = 0.0, **config: Any) -> dict[str, Any]:
        """A workflow node that records one effect here (body: execution and node ids)."""
        return {
            "id": node_id,
            "type": "http.request",
            "config": {
                "method": "POST",
                "url": f"{self.url}?sleep={sleep}",
                "json": {"execution": "{{ execution.id }}", "node": node_id},
                "timeout": "30s",
            },
            **config,
        }

    def violations(
        self, db: Database, execution_ids: list[str], nodes: list[str], at_most_once: set[str]
    ) -> list[str]:
        """What the calls say about G2 and G3, for every (execution, node) given:

        - every call carries the key ``execution id : node id`` and says so in its body;
        - a step that succeeded was called at least once (its success is not made up);
        - an at-most-once node was called at most once;
        - no call arrived after its step's success was committed (nothing re-ran it)."""
        committed = _success_times(db, execution_ids)
        calls = self.by_key()
        problems = []
        for key, effects in calls.items():
            for effect in effects:
                said = f"{effect.body.get('execution')}:{effect.body.get('node')}"
                if said != key:
                    problems.append(f"a call for {said} carried the key {key!r}")
        for execution_id in execution_ids:
            for node_id in nodes:
                key = f"{execution_id}:{node_id}"
                effects = calls.get(key, [])
                done = committed.get(key)
                if done is not None and not effects:
                    problems.append(f"{key} succeeded without ever being called")
                if node_id in at_most_once and len(effects) > 1:
                    problems.append(f"{key} is at-most-once and was called {len(effects)} times")
                late = [e for e in effects if done is not None and e.at > done]
                if late:
                    problems.append(f"{key} was called again after its success was committed")
        return problems


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A caller killed mid-call (the point of the crash suites) breaks its connection;
        that is no error of the ledger's (the call was recorded on arrival)."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _success_times(db: Database, execution_ids: list[str]) -> dict[str, float]:
    with db.read() as conn:
        rows = conn.execute(
            select(steps.c.execution_id, steps.c.node_id, steps.c.finished_at).where(
                steps.c.execution_id.in_(execution_ids), steps.c.status == "succeeded"
            )
        ).all()
    return {f"{e}:{n}": _epoch(t) for e, n, t in rows if t is not None}


def _epoch(value: datetime) -> float:
    return value.timestamp()


def serve() -> Iterator[Ledger]:
    ledger = Ledger()
    try:
        yield ledger
    finally:
        ledger.close()
