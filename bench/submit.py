"""Submit benchmark: how fast one client enqueues executions, on SQLite and PostgreSQL
(every enqueue durable, each with its own idempotency key; no worker runs):

- through the Python API: one ``Conveyor.execute`` at a time, then in batches with
  ``Conveyor.execute_many``;
- over HTTP, against a real ``conveyor server`` process (``--concurrency 0``: no embedded
  worker; ``--no-scheduler``) on a fresh database: one keep-alive ``httpx.Client`` POSTing
  ``/workflows/{w}/execute`` one execution at a time, then with a list body per batch.

Run from the repository root with the project's virtualenv active::

    python bench/submit.py                       # 2000 executions, both backends
    python bench/submit.py --count 5000 --batch 1000 --backends postgres
    python bench/submit.py --json /tmp/submit.json   # also write the figures

Prints executions/s for each way (and p50/p99 of one call), measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

from conveyor import Submission
from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry

FLOW = {
    "name": "submitted",
    "nodes": [{"id": "a", "type": "transform", "config": {"output": "{{ input.n }}"}}],
}
PG = os.environ.get("CONVEYOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SERVER_COMMAND = [sys.executable, "-c", "from conveyor.cli.main import main; main()", "server"]
ADMIN = {"email": "bench@example.com", "password": "bench-password-long-enough"}
API = "/api/v1/workspaces/default"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100), as bench/workers.py."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


def fresh(backend: str, folder: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}", None
    name = f"bench_submit_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return PG.rsplit("/", 1)[0] + f"/{name}", name


def drop(name: str | None) -> None:
    if name is not None:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


async def one_at_a_time(app: Conveyor, count: int) -> tuple[float, list[float]]:
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        await app.execute("submitted", {"n": i}, idempotency_key=f"one-{i}")
        latencies.append(time.perf_counter() - t)
    return count / (time.perf_counter() - started), latencies


async def batched(app: Conveyor, count: int, batch: int) -> float:
    started = time.perf_counter()
    for first in range(0, count, batch):
        items = [
            Submission({"n": i}, idempotency_key=f"many-{i}")
            for i in range(first, min(first + batch, count))
        ]
        results = await app.execute_many("submitted", items)
        assert not any(isinstance(r, Exception) for r in results), results
    return count / (time.perf_counter() - started)


async def measure(backend: str, count: int, batch: int, folder: Path) -> dict[str, float]:
    url, name = fresh(backend, folder)
    try:
        app = await Conveyor.open(url, build_registry())
        try:
            await app.apply(FLOW)
            single, latencies = await one_at_a_time(app, count)
            many = await batched(app, count, batch)
        finally:
            app.close()
    finally:
        drop(name)
    return {
        "api_single_per_s": single,
        "api_single_p50_ms": percentile(latencies, 50) * 1000,
        "api_single_p99_ms": percentile(latencies, 99) * 1000,
        "api_batched_per_s": many,
    }


# -- over HTTP, a real server -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(url: str, folder: Path) -> Iterator[str]:
    """A ``conveyor server`` on ``url`` (no embedded worker, no scheduler), as the README
    starts one, with a first admin from the environment; yields its base address."""
    port = _free_port()
    log = folder / f"server-{port}.log"
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": url,
        "CONVEYOR_ADMIN_EMAIL": ADMIN["email"],
        "CONVEYOR_ADMIN_PASSWORD": ADMIN["password"],
    }
    command = [*SERVER_COMMAND, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--concurrency", "0", "--no-scheduler"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server not ready within 60 s")
            time.sleep(0.1)
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def api_key(base: str) -> str:
    """Sign in as the first admin, make an owner API key, and apply the workflow with it."""
    with httpx.Client(base_url=base, timeout=30) as session:
        login = session.post("/api/v1/auth/login", json=ADMIN)
        login.raise_for_status()
        created = session.post(
            f"{API}/api-keys",
            json={"name": "bench", "role": "owner"},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},  # a cookie session's writes
        )
        created.raise_for_status()
        key = str(created.json()["key"])
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        client.post(f"{API}/workflows", json={"definition": FLOW}).raise_for_status()
    return key


def over_http(base: str, key: str, count: int, batch: int) -> dict[str, float]:
    """One keep-alive client: ``count`` single POSTs, then ``count`` in list bodies."""
    path = f"{API}/workflows/{FLOW['name']}/execute"
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        started = time.perf_counter()
        for i in range(count):
            t = time.perf_counter()
            answer = client.post(path, json={"input": {"n": i}, "idempotency_key": f"one-{i}"})
            latencies.append(time.perf_counter() - t)
            if answer.status_code != 202 or not answer.json()["created"]:
                raise RuntimeError(f"execute: {answer.status_code} {answer.text[:300]}")
        single = count / (time.perf_counter() - started)
        started = time.perf_counter()
        for first in range(0, count, batch):
            body = [
                {"input": {"n": i}, "idempotency_key": f"many-{i}"}
                for i in range(first, min(first + batch, count))
            ]
            answer = client.post(path, json=body)
            if answer.status_code != 202 or answer.json()["created"] != len(body):
                raise RuntimeError(f"execute (list): {answer.status_code} {answer.text[:300]}")
        many = count / (time.perf_counter() - started)
    return {
        "http_single_per_s": single,
        "http_single_p50_ms": percentile(latencies, 50) * 1000,
        "http_single_p99_ms": percentile(latencies, 99) * 1000,
        "http_batched_per_s": many,
    }


def measure_http(backend: str, count: int, batch: int, folder: Path) -> dict[str, float]:
    url, name = fresh(backend, folder)
    try:
        with server(url, folder) as base:
            return over_http(base, api_key(base), count, batch)
    finally:
        drop(name)


def settings(backends: list[str]) -> str:
    """The durability settings the figures were measured with."""
    found = []
    if "sqlite" in backends:
        found.append("SQLite WAL synchronous=FULL")
    if "postgres" in backends:
        with psycopg.connect(PG) as conn:
            sync, fsync = (
                str(conn.execute(f"SHOW {n}").fetchone()[0])  # type: ignore[index]
                for n in ("synchronous_commit", "fsync")
            )
        found.append(f"PostgreSQL synchronous_commit={sync} fsync={fsync}")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    found: dict[str, Any] = {"count": args.count, "batch": args.batch}
    print(f"one client, {args.count} executions each way; {settings(backends)}")
    with tempfile.TemporaryDirectory() as folder:
        for backend in backends:
            r = asyncio.run(measure(backend, args.count, args.batch, Path(folder)))
            r |= measure_http(backend, args.count, args.batch, Path(folder))
            found[backend] = r
            print(
                f"{backend:9} Python API  execute: {r['api_single_per_s']:7.0f}/s "
                f"(p50 {r['api_single_p50_ms']:.2f} ms, p99 {r['api_single_p99_ms']:.2f} ms)"
                f"   execute_many (batches of {args.batch}): {r['api_batched_per_s']:7.0f}/s\n"
                f"{'':9} HTTP        POST:    {r['http_single_per_s']:7.0f}/s "
                f"(p50 {r['http_single_p50_ms']:.2f} ms, p99 {r['http_single_p99_ms']:.2f} ms)"
                f"   list body (batches of {args.batch}):    {r['http_batched_per_s']:7.0f}/s"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
