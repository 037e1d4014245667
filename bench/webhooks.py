"""Webhook benchmark: webhook -> 4 light nodes -> synchronous response, at concurrency 8.

Run from the repository root with the project's virtualenv active::

    python bench/webhooks.py                                  # SQLite and PostgreSQL
    python bench/webhooks.py --backends sqlite --requests 500

A real ``conveyor server`` (embedded worker, 8 slots) per backend. A workflow of 4
``transform`` nodes in a chain declares a webhook (auth ``none``, like the n8n workflow it
is compared with; a signature adds one HMAC per request) answering in ``sync`` mode with
the last node's output. 8 httpx clients POST to it as fast as it answers; every answer
must be 2xx with the expected body, and every execution must be ``succeeded`` in the
database at the end (every step committed before the answer: the response waits for the
execution's final commit). Reported: executions/s over the measured requests, and the
p50/p99 of the request latency seen by the client, and the server's CPU time per execution.
To profile, attach py-spy to the server while it runs (``--hold`` keeps it up between the
warm-up and the run and prints its pid).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import streams
from streams import ADMIN, API, BenchError, Probe, Server, database, server

CONCURRENCY = 8
WARMUP = 100


def workflow() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"id": "n1", "type": "transform", "config": {"output": {"v": "{{ trigger.body.n }}"}}}
    ]
    for i in range(2, 5):
        output = {"v": f"{{{{ nodes.n{i - 1}.output.v + 1 }}}}"}
        nodes.append(
            {
                "id": f"n{i}",
                "type": "transform",
                "needs": [f"n{i - 1}"],
                "config": {"output": output},
            }
        )
    hook = {
        "type": "webhook",
        "id": "in",
        "auth": {"mode": "none"},
        "response": {"mode": "sync", "node": "n4", "timeout": "30s"},
    }
    return {"name": "bench-webhook", "nodes": nodes, "triggers": [hook]}


def api_key(running: Server) -> str:
    """Log in as the first admin and make an API key (the session needs its CSRF token)."""
    with httpx.Client(base_url=running.base, timeout=10) as session:
        login = session.post("/api/v1/auth/login", json=ADMIN)
        login.raise_for_status()
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        created = session.post(
            f"{API}/api-keys", json={"name": "bench", "role": "owner"}, headers=csrf
        )
        created.raise_for_status()
        return str(created.json()["key"])


streams._api_key = api_key  # streams.server makes its key this way too


def install(base: str, key: str) -> str:
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        created = client.post(f"{API}/workflows", json={"definition": workflow()})
        created.raise_for_status()
        client.post(f"{API}/workflows/bench-webhook/activate").raise_for_status()
    hooks = [t for t in created.json()["triggers"] if t["kind"] == "webhook"]
    return str(hooks[0]["url"])


async def drive(url: str, count: int, start: int) -> list[float]:
    """``count`` requests by ``CONCURRENCY`` clients; the latency of each, in seconds."""
    latencies: list[float] = []
    numbers = iter(range(start, start + count))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one_client() -> None:
            for n in numbers:
                began = time.perf_counter()
                answer = await client.post(url, json={"n": n})
                latencies.append(time.perf_counter() - began)
                if answer.status_code != 200 or answer.json() != {"v": n + 3}:
                    raise BenchError(f"request {n}: {answer.status_code} {answer.text[:300]}")

        await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(backend: str, requests: int, hold: float) -> dict[str, float]:
    with database(backend) as url, tempfile.TemporaryDirectory() as logs:
        with server(url, logs, concurrency=CONCURRENCY) as running:
            hook = install(running.base, running.key)
            asyncio.run(drive(hook, WARMUP, 0))
            if hold:
                print(f"server pid {running.process.pid}; starting in {hold:g} s", flush=True)
                time.sleep(hold)
            cpu = running.cpu_seconds()
            began = time.perf_counter()
            latencies = asyncio.run(drive(hook, requests, WARMUP))
            elapsed = time.perf_counter() - began
            cpu = running.cpu_seconds() - cpu
            probe = Probe(url)
            try:
                counts = probe.by_status()
            finally:
                probe.close()
        if counts.get("succeeded", 0) < requests + WARMUP or len(counts) != 1:
            raise BenchError(f"executions by status: {counts}")
    return {
        "executions/s": requests / elapsed,
        "p50 ms": statistics.median(latencies) * 1000,
        "p99 ms": percentile(latencies, 0.99) * 1000,
        "server CPU ms/execution": cpu / requests * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--hold", type=float, default=0.0, help="seconds to wait after warm-up")
    args = parser.parse_args()
    # The server's per-webhook delivery limit would cap what this measures (docs/security.md).
    os.environ["CONVEYOR_WEBHOOK_RATE"] = "0"
    for backend in args.backends.split(","):
        result = run(backend, args.requests, args.hold)
        shown = ", ".join(f"{k} {v:.1f}" for k, v in result.items())
        print(f"{backend}: {args.requests} requests at concurrency {CONCURRENCY}: {shown}")


if __name__ == "__main__":
    main()
