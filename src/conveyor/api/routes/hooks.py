"""The public webhook endpoint, ``/hooks/{token}``: no session or API key, the token and the
webhook's own auth (triggers/webhooks.py) admit a request.

Order of checks (each answer is recorded in ``webhook_deliveries`` once the webhook is
known): an address past its limit of unknown URLs 429; unknown or deleted token 404
(counted against the address); over the webhook's delivery rate 429 (not recorded:
a flood writes nothing); disabled 404; archived workflow 404; paused or draft
workflow 409; method 405; body over ``max_body_bytes`` 413 (read with a bound, never
buffered past it); credentials or signature 401; bad body or delivery id 400; input schema
422. Then the execution is enqueued with the idempotency key ``webhook:<id>:<delivery id>``
and its delivery recorded in the same transaction, so accepted means durable (G1) and a
redelivery returns the first execution (G10).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Connection

from conveyor import failpoints
from conveyor.api import problems
from conveyor.api.auth import base_app, throttles
from conveyor.api.routes.streams import execution_messages
from conveyor.api.sse import START, EventStream
from conveyor.app import Conveyor
from conveyor.engine.limits import too_large
from conveyor.engine.triggers import WebhookSpec
from conveyor.errors import Conflict, ConveyorError, NotFound, PayloadTooLarge
from conveyor.store import triggers as store
from conveyor.triggers import webhooks
from conveyor.triggers.finishes import finished_within

router = APIRouter(tags=["webhooks"])
CACHE_SECONDS = 1.0  # a disabled or deleted webhook stops answering within this
CACHE_SIZE = 10_000
SETTING = "max_body_bytes"
API = "/api/v1"


@dataclass(frozen=True)
class Hook:
    """A webhook as the route needs it: its row, parsed spec and decrypted secret."""

    row: dict[str, Any]
    spec: WebhookSpec
    secret: str | None


@dataclass
class Hooks:
    """Per application: the token cache."""

    cache: dict[str, tuple[float, Hook | None]] = field(default_factory=dict)

    async def lookup(self, conveyor: Conveyor, token: str) -> Hook | None:
        now = time.monotonic()
        cached = self.cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await conveyor.store.read(store.webhook_by_token, token)
        hook = None
        if row is not None:
            secret = None
            if row["secret"] is not None:
                secret = conveyor.keyring.decrypt(row["secret"], f"webhook:{row['id']}")
            hook = Hook(row, WebhookSpec.model_validate(row["spec"]), secret)
        if len(self.cache) >= CACHE_SIZE:
            self.cache.clear()
        self.cache[token] = (now + CACHE_SECONDS, hook)
        return hook


def close(app: FastAPI) -> None:
    """Forget the token cache (the app's lifespan ends)."""
    app.state.hooks = None


def _hooks(request: Request) -> Hooks:
    hooks: Hooks | None = getattr(request.app.state, "hooks", None)
    if hooks is None:
        hooks = request.app.state.hooks = Hooks()
    return hooks


@dataclass
class Delivery:
    """What is recorded of one request."""

    webhook_id: str
    received_at: datetime
    method: str
    client: str | None
    delivery_id: str | None = None

    def row(
        self, status: int, outcome: str, detail: str | None, execution_id: str | None
    ) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "delivery_id": self.delivery_id,
            "received_at": self.received_at,
            "method": self.method,
            "status_code": status,
            "outcome": outcome,
            "detail": None if detail is None else detail[:1000],
            "execution_id": execution_id,
            "client": None if self.client is None else self.client[:64],
        }


METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


async def deliver(token: str, request: Request) -> Response:
    """Deliver to a webhook (no API key: the webhook's own auth applies)."""
    conveyor = base_app(request)
    client = request.client.host if request.client is not None else None
    limits = throttles(request)
    limits.check_hook_url(client or "")
    hook = await _hooks(request).lookup(conveyor, token)
    if hook is None or hook.row["deleted_at"] is not None:
        limits.hook_url_failed(client or "")
        raise NotFound("no webhook at this URL")
    # A flood is refused here, before anything (its delivery included) is written.
    limits.admit_delivery(hook.row["id"])
    delivery = Delivery(hook.row["id"], conveyor.store.clock.now(), request.method, client)
    scoped = conveyor.scoped(hook.row["workspace_id"])
    try:
        return await _accept(scoped, hook, request, delivery)
    except ConveyorError as exc:
        response = problems.response_for(exc)
        detail = str(exc)
    status = response.status_code
    outcome = problems.delivery_outcome(status)
    await scoped.store.write(store.record_delivery, delivery.row(status, outcome, detail, None))
    return response


def _admit(hook: Hook, method: str) -> Response | None:
    """The state checks, before the body is read."""
    if not hook.row["enabled"]:
        raise NotFound("this webhook is disabled")
    status = hook.row["workflow_status"]
    if status == "archived":
        raise NotFound("the workflow of this webhook is archived")
    if status != "active":
        raise Conflict(
            f"the workflow of this webhook is {status}: activate it to accept deliveries"
        )
    if method not in hook.spec.methods:
        return problems.method_not_allowed(list(hook.spec.methods))
    return None


async def _accept(conveyor: Conveyor, hook: Hook, request: Request, delivery: Delivery) -> Response:
    refused = _admit(hook, request.method)
    if refused is not None:
        await conveyor.store.write(
            store.record_delivery,
            delivery.row(refused.status_code, "rejected", "method not accepted", None),
        )
        return refused
    body = await _read_body(request, hook.spec.max_body_bytes)
    incoming = _incoming(request, body, delivery.client)
    proof = webhooks.verify(hook.spec, hook.secret, incoming, conveyor.store.clock.now())
    data = webhooks.trigger_data(hook.spec, incoming)
    delivery.delivery_id = webhooks.delivery_id(hook.spec, incoming, data, proof)
    key = None
    if delivery.delivery_id is not None:
        key = webhooks.idempotency_key(hook.row["id"], delivery.delivery_id)
    mode = hook.spec.response.mode

    def record(conn: Connection, execution_id: str, created: bool) -> None:
        # The status answered at acceptance (a sync answer past its timeout is a 202).
        status = problems.HOOK_DUPLICATE
        if created:
            status = {
                "async": problems.HOOK_ACCEPTED,
                "sync": hook.spec.response.status,
                "stream": problems.HOOK_STREAM,
            }[mode]
        outcome = "started" if created else "duplicate"
        store.record_delivery(conn, delivery.row(status, outcome, None, execution_id))

    enqueued = await conveyor.trigger(
        hook.row["workflow_id"],
        data,
        trigger_type="webhook",
        trigger_id=hook.row["id"],
        idempotency_key=key,
        record=record,
    )
    await failpoints.reached("webhook.after_commit")
    return await _respond(conveyor, hook, request, enqueued.execution_id, enqueued.created)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            too_large("the webhook body", int(declared), limit, SETTING),
            setting=SETTING,
            limit=limit,
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                too_large("the webhook body", size, limit, SETTING), setting=SETTING, limit=limit
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _incoming(request: Request, body: bytes, client: str | None) -> webhooks.WebhookRequest:
    return webhooks.WebhookRequest(
        method=request.method,
        path=request.url.path,
        url=str(request.url),
        query=list(request.query_params.multi_items()),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        client=client,
    )


def _urls(request: Request, workspace_id: str, execution_id: str) -> dict[str, str]:
    base = str(request.base_url).rstrip("/")
    status_url = f"{base}{API}/workspaces/{workspace_id}/executions/{execution_id}"
    return {"status_url": status_url, "stream_url": f"{status_url}/stream"}


async def _respond(
    conveyor: Conveyor, hook: Hook, request: Request, execution_id: str, created: bool
) -> Response:
    mode = hook.spec.response.mode
    urls = _urls(request, conveyor.workspace_id, execution_id)
    if mode == "stream":
        detail = {"id": execution_id, "status": "queued"}
        if not created:
            detail = await conveyor.store.execution_row(execution_id)
        feed = request.app.state.feed
        stream = EventStream(execution_messages(conveyor.store, feed, detail, START))
        stream.headers["X-Conveyor-Execution-Id"] = execution_id
        stream.headers["X-Conveyor-Duplicate"] = "false" if created else "true"
        return stream
    if mode == "sync" and created:
        within = hook.spec.response.timeout.total_seconds()
        node = hook.spec.response.node
        finished = await finished_within(conveyor.store, execution_id, within, node)
        if finished is not None:
            return _result(hook, finished, urls)
        return _accepted(execution_id, "running", False, urls, problems.HOOK_ACCEPTED)
    if created:
        return _accepted(execution_id, "queued", False, urls, problems.HOOK_ACCEPTED)
    row = await conveyor.store.execution_row(execution_id)
    return _accepted(execution_id, row["status"], True, urls, problems.HOOK_DUPLICATE)


def _accepted(
    execution_id: str, status: str, duplicate: bool, urls: dict[str, str], code: int
) -> JSONResponse:
    body = {"execution_id": execution_id, "status": status, "duplicate": duplicate, **urls}
    return JSONResponse(body, status_code=code, headers={"Location": urls["status_url"]})


def _result(hook: Hook, finished: dict[str, Any], urls: dict[str, str]) -> Response:
    execution_id = finished["id"]
    if finished["status"] != "succeeded":
        return problems.execution_failed(
            execution_id, finished["status"], finished.get("error"), **urls
        )
    response = hook.spec.response
    value = finished.get("result")
    if response.node is not None:
        value = finished.get("node_output")
    if response.status in (204, 304) or response.status < 200:
        headers = {**response.headers, "X-Conveyor-Execution-Id": execution_id}
        return Response(status_code=response.status, headers=headers)
    return JSONResponse(
        value,
        status_code=response.status,
        headers={**response.headers, "X-Conveyor-Execution-Id": execution_id},
    )


for _method in METHODS:
    router.add_api_route(
        "/hooks/{token}",
        deliver,
        methods=[_method],
        operation_id=f"deliver_webhook_{_method.lower()}",
        summary=f"Deliver to a webhook by {_method} (the webhook's own auth applies)",
        responses=problems.documented(400, 401, 404, 409, 413, 422, 429),
    )
