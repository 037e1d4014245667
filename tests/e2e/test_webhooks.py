"""Webhooks end to end: a real ``conveyor server`` (embedded worker) on SQLite and on
PostgreSQL, driven over real HTTP. Every auth mode accepted and refused, a signature made by
the ``standardwebhooks`` package, stale and tampered ones refused without an execution,
redeliveries and 50 concurrent deliveries of one id giving one execution, the sync, stream
and 413/405/409/404 answers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.e2e.processes import Workers
from tests.e2e.test_server import API, WORKSPACE, ServerProcess, api_key, read_sse

WS = f"{API}/workspaces/{WORKSPACE}"


def hook(id: str, **auth: Any) -> dict[str, Any]:
    return {"type": "webhook", "id": id, "auth": auth}


WORKFLOW = {
    "name": "hooked",
    "nodes": [
        {"id": "echo", "type": "transform", "config": {"output": {"got": "{{ trigger.body }}"}}}
    ],
    "triggers": [
        hook("standard"),
        hook("github", scheme="github"),
        hook("stripe", scheme="stripe"),
        hook("slack", scheme="slack"),
        hook("generic", scheme="hmac", hmac={"header": "X-Sig", "parts": ["method", "body"]}),
        hook("token", mode="header", header="X-Token"),
        hook("basic", mode="basic", username="ci"),
        {**hook("open", mode="none"), "max_body_bytes": 100, "methods": ["POST", "PUT"]},
    ],
}


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, tmp_path / "server.log", concurrency=4)
    try:
        process.wait_ready(within=30)
        yield process
    finally:
        process.close()


def client_for(server: ServerProcess) -> httpx.Client:
    headers = {"authorization": f"Bearer {api_key(server.base_url)}"}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=30)


def apply(client: httpx.Client, definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Create and activate; the declared webhooks by key, each with its url and secret."""
    created = client.post(f"{WS}/workflows", json={"definition": definition})
    assert created.status_code == 201, created.text
    activated = client.post(f"{WS}/workflows/{definition['name']}/activate")
    assert activated.status_code == 200, activated.text
    return {t["key"]: t for t in created.json()["triggers"] if t["kind"] == "webhook"}


def executions(client: httpx.Client) -> list[dict[str, Any]]:
    listed = client.get(f"{WS}/executions", params={"limit": 500})
    assert listed.status_code == 200, listed.text
    return list(listed.json()["items"])


def mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_requests(hooks: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Good headers per webhook, for the body ``BODY``."""
    now = int(time.time())
    secret = {k: str(v.get("secret", "")) for k, v in hooks.items()}
    standard = Webhook(secret["standard"]).sign("msg_1", datetime.now(UTC), BODY.decode())
    basic = base64.b64encode(f"ci:{secret['basic']}".encode()).decode()
    return {
        "standard": {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(now),
            "webhook-signature": standard,
        },
        "github": {"X-Hub-Signature-256": "sha256=" + mac(secret["github"], BODY)},
        "stripe": {
            "Stripe-Signature": f"t={now},v1=" + mac(secret["stripe"], f"{now}.".encode() + BODY)
        },
        "slack": {
            "X-Slack-Request-Timestamp": str(now),
            "X-Slack-Signature": "v0=" + mac(secret["slack"], f"v0:{now}:".encode() + BODY),
        },
        "generic": {"X-Sig": mac(secret["generic"], b"POST" + BODY)},
        "token": {"X-Token": secret["token"]},
        "basic": {"Authorization": f"Basic {basic}"},
        "open": {},
    }


BODY = b'{"n": 1}'
JSON = {"content-type": "application/json"}


def tampered(name: str, headers: dict[str, str]) -> dict[str, str]:
    """The same headers with the credential or signature changed."""
    changed = dict(headers)
    key = {
        "standard": "webhook-signature",
        "github": "X-Hub-Signature-256",
        "stripe": "Stripe-Signature",
        "slack": "X-Slack-Signature",
        "generic": "X-Sig",
        "token": "X-Token",
        "basic": "Authorization",
    }[name]
    value = changed[key]
    changed[key] = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    return changed


@pytest.mark.timeout(120)
def test_every_auth_mode_dedupe_and_limits(server: ServerProcess) -> None:
    with client_for(server) as client:
        hooks = apply(client, WORKFLOW)
        assert hooks["open"].get("secret") is None and hooks["standard"]["secret"].startswith(
            "whsec_"
        )
        good = signed_requests(hooks)
        started: dict[str, str] = {}
        for name, headers in good.items():
            if name != "open":
                refused = httpx.post(
                    hooks[name]["url"], content=BODY, headers={**JSON, **tampered(name, headers)}
                )
                assert refused.status_code == 401, (name, refused.text)
                missing = httpx.post(hooks[name]["url"], content=BODY, headers=JSON)
                assert missing.status_code == 401, (name, missing.text)
            answer = httpx.post(hooks[name]["url"], content=BODY, headers={**JSON, **headers})
            assert answer.status_code == 202, (name, answer.text)
            body = answer.json()
            assert body["duplicate"] is False and answer.headers["location"] == body["status_url"]
            started[name] = body["execution_id"]
        # Refusals started nothing: one execution per accepted delivery.
        assert sorted(e["id"] for e in executions(client)) == sorted(started.values())

        # A stale Standard Webhooks signature (made by the third-party signer) is refused.
        stale_at = datetime.now(UTC) - timedelta(minutes=10)
        stale = {
            "webhook-id": "msg_old",
            "webhook-timestamp": str(int(stale_at.timestamp())),
            "webhook-signature": Webhook(hooks["standard"]["secret"]).sign(
                "msg_old", stale_at, BODY.decode()
            ),
        }
        answer = httpx.post(hooks["standard"]["url"], content=BODY, headers={**JSON, **stale})
        assert answer.status_code == 401 and "replay window" in answer.json()["detail"]

        # A redelivery returns the first execution.
        again = httpx.post(
            hooks["standard"]["url"], content=BODY, headers={**JSON, **good["standard"]}
        )
        assert again.status_code == 200, again.text
        assert again.json()["execution_id"] == started["standard"]
        assert again.json()["duplicate"] is True

        # A replay of any signed request, its unsigned headers changed, starts nothing: the
        # signature names the delivery (schemes that sign no id; Standard signs webhook-id).
        for name in ("github", "stripe", "slack", "generic"):
            replay = {**JSON, **good[name], "X-GitHub-Delivery": f"forged-{name}"}
            answer = httpx.post(hooks[name]["url"], content=BODY, headers=replay)
            assert answer.status_code == 200, (name, answer.text)
            assert answer.json()["execution_id"] == started[name], name
            assert answer.json()["duplicate"] is True, name
        assert len(executions(client)) == len(started)

        # 50 concurrent deliveries of one id: one execution.
        assert len(set(asyncio.run(concurrent(hooks["standard"], 50)))) == 1

        # Limits and methods.
        url = hooks["open"]["url"]
        assert httpx.post(url, content=b"x" * 101).status_code == 413
        big = httpx.post(url, content=iter([b"x" * 60, b"x" * 60]))  # no Content-Length
        assert big.status_code == 413, big.text
        assert httpx.put(url, content=b"ok").status_code == 202
        not_allowed = httpx.get(url)
        assert not_allowed.status_code == 405 and not_allowed.headers["allow"] == "POST, PUT"

        check_deliveries_and_lifecycle(client, hooks)


async def concurrent(target: dict[str, Any], count: int) -> list[str]:
    body = b'{"n": 50}'
    now = datetime.now(UTC)
    headers = {
        **JSON,
        "webhook-id": "msg_50",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(target["secret"]).sign("msg_50", now, body.decode()),
    }
    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(
            *(client.post(target["url"], content=body, headers=headers) for _ in range(count))
        )
    assert {a.status_code for a in answers} <= {200, 202}, [a.text for a in answers]
    assert sum(a.status_code == 202 for a in answers) == 1
    return [a.json()["execution_id"] for a in answers]


def check_deliveries_and_lifecycle(client: httpx.Client, hooks: dict[str, Any]) -> None:
    standard = hooks["standard"]["id"]
    listed = client.get(f"{WS}/webhooks/{standard}/deliveries", params={"limit": 100})
    assert listed.status_code == 200, listed.text
    outcomes = [d["outcome"] for d in listed.json()]
    assert outcomes.count("started") == 2 and "refused" in outcomes and "duplicate" in outcomes
    shown = client.get(f"{WS}/webhooks/{standard}").json()
    assert "secret" not in shown and shown["auth_mode"] == "signature"

    url = hooks["open"]["url"]
    assert client.post(f"{WS}/workflows/hooked/pause").status_code == 200
    wait_for_status(url, 409)
    assert client.post(f"{WS}/workflows/hooked/activate").status_code == 200
    wait_for_status(url, 202)
    open_id = hooks["open"]["id"]
    assert client.post(f"{WS}/webhooks/{open_id}/disable").status_code == 200
    wait_for_status(url, 404)
    assert client.post(f"{WS}/webhooks/{open_id}/enable").status_code == 200
    wait_for_status(url, 202)
    assert client.delete(f"{WS}/webhooks/{open_id}").status_code == 204
    wait_for_status(url, 404)
    # An archived workflow's webhooks answer 404, saying why.
    assert client.post(f"{WS}/workflows/hooked/archive").status_code == 200
    wait_for_status(hooks["token"]["url"], 404)
    archived = httpx.post(hooks["token"]["url"], content=b"{}", headers=JSON)
    assert "archived" in archived.json()["detail"]


def wait_for_status(url: str, status: int) -> None:
    """Changes reach the route within its cache time (about a second)."""
    deadline = time.monotonic() + 10
    while True:
        got = httpx.post(url, content=b"{}", headers=JSON).status_code
        if got == status:
            return
        assert time.monotonic() < deadline, f"{url} answers {got}, not {status}"
        time.sleep(0.1)


RESPONSES = {
    "name": "answers",
    "nodes": [
        {"id": "first", "type": "transform", "config": {"output": {"n": "{{ trigger.body.n }}"}}},
        {
            "id": "second",
            "type": "transform",
            "needs": ["first"],
            "config": {"output": {"doubled": "{{ nodes.first.output.n * 2 }}"}},
        },
    ],
    "triggers": [
        {
            "type": "webhook",
            "id": "sync",
            "auth": {"mode": "none"},
            "response": {
                "mode": "sync",
                "node": "first",
                "status": 201,
                "headers": {"X-Made-By": "conveyor"},
            },
        },
        {
            "type": "webhook",
            "id": "stream",
            "auth": {"mode": "none"},
            "response": {"mode": "stream"},
        },
    ],
}
SLOW = {
    "name": "slow",
    "nodes": [{"id": "pause", "type": "wait", "config": {"duration": "10s"}}],
    "triggers": [
        {
            "type": "webhook",
            "id": "sync",
            "auth": {"mode": "none"},
            "response": {"mode": "sync", "timeout": "1s"},
        }
    ],
}


@pytest.mark.timeout(120)
def test_sync_and_stream_responses(server: ServerProcess) -> None:
    with client_for(server) as client:
        hooks = apply(client, RESPONSES)
        answer = httpx.post(hooks["sync"]["url"], json={"n": 21}, timeout=30)
        assert answer.status_code == 201, answer.text
        assert answer.json() == {"n": 21} and answer.headers["x-made-by"] == "conveyor"

        slow = apply(client, SLOW)
        started = time.monotonic()
        late = httpx.post(slow["sync"]["url"], json={}, timeout=30)
        assert late.status_code == 202, late.text
        assert 0.9 < time.monotonic() - started < 8  # answered at 1 s, long before 10 s
        assert late.json()["execution_id"] and late.json()["stream_url"].endswith("/stream")

        with httpx.stream("POST", hooks["stream"]["url"], json={"n": 2}, timeout=30) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            kinds = []
            for message in read_sse(stream):
                kinds.append(message.event)
                if message.event == "complete":
                    break
        assert kinds[0] == "connected" and "step" in kinds and kinds[-1] == "complete"


def test_sync_answer_when_another_process_runs_the_execution(
    database_url: str, tmp_path: Path
) -> None:
    """A server without an embedded worker is told of the finish by the worker's finishing
    commit (NOTIFY, or SQLite's finished file): the answer is the result, not the 202
    fallback."""
    process = ServerProcess(database_url, tmp_path / "server.log", concurrency=0)
    workers = Workers(database_url, tmp_path)
    try:
        process.wait_ready(within=30)
        workers.start(concurrency=2, CONVEYOR_SCHEDULER="false")
        with client_for(process) as client:
            hooks = apply(client, RESPONSES)
            for n in (1, 2, 3):
                answer = httpx.post(hooks["sync"]["url"], json={"n": n}, timeout=60)
                assert answer.status_code == 201, answer.text
                assert answer.json() == {"n": n}
    finally:
        workers.close()
        process.close()
