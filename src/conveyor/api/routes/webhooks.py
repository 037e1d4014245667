"""Webhooks: list, create, show, enable/disable, delete, set the secret, deliveries.

A secret is returned once, when it is made (creation, or ``POST .../secret``), and never
again; it is stored encrypted (``conveyor.secrets``). Viewers may read; members change.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from conveyor.api.auth import Scope, read_access, write_access
from conveyor.api.bodies import JsonRoute
from conveyor.api.schemas import (
    SecretBody,
    Webhook,
    WebhookCreated,
    WebhookDelivery,
    WebhookSecret,
)
from conveyor.engine.triggers import WebhookSpec
from conveyor.errors import InputError
from conveyor.store import triggers as store
from conveyor.store import workflows
from conveyor.store.accounts import Role

router = APIRouter(prefix="/workspaces/{ws}", tags=["webhooks"], route_class=JsonRoute)
Read = Annotated[Scope, Depends(read_access)]
Write = Annotated[Scope, Depends(write_access)]
KIND = "webhook"


def hook_url(request: Request, token: str) -> str:
    """The public URL of a webhook, on the base URL this request came to."""
    return f"{str(request.base_url).rstrip('/')}/hooks/{token}"


def view(request: Request, row: dict[str, Any], role: Role = Role.MEMBER) -> dict[str, Any]:
    """A webhook as the API shows it. The URL is a credential (anyone holding it can start
    executions when the hook has no auth of its own), so a viewer, who cannot start
    executions, gets ``null``."""
    spec = row["spec"]
    return {
        "id": row["id"],
        "key": row["key"],
        "workflow_id": row["workflow_id"],
        "url": hook_url(request, row["token"]) if role.allows(Role.MEMBER) else None,
        "auth_mode": spec.get("auth", {}).get("mode", "signature"),
        "enabled": row["enabled"],
        "source": row["source"],
        "spec": spec,
        "last_delivery_at": row["last_delivery_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


@router.get("/workflows/{workflow}/webhooks", response_model=list[Webhook])
async def list_webhooks(scope: Read, request: Request, workflow: str) -> list[dict[str, Any]]:
    found = await scope.conveyor.store.read(workflows.get_workflow, scope.workspace_id, workflow)
    rows = await scope.conveyor.store.read(
        store.list_for_workflow, KIND, scope.workspace_id, found["id"]
    )
    return [view(request, row, scope.role) for row in rows]


@router.post(
    "/workflows/{workflow}/webhooks",
    response_model=WebhookCreated,
    status_code=201,
    summary="Create a webhook (not declared by the definition); its secret is shown once",
)
async def create_webhook(
    scope: Write, request: Request, workflow: str, body: WebhookSpec
) -> dict[str, Any]:
    conveyor = scope.conveyor
    found = await conveyor.store.read(workflows.get_workflow, scope.workspace_id, workflow)
    spec = body.model_dump(mode="json", exclude_none=True)
    if spec["response"].get("node") is not None:
        await _check_node(scope, found["id"], spec["response"]["node"])
    change = await conveyor.store.write(
        store.create,
        KIND,
        scope.workspace_id,
        found["id"],
        spec,
        conveyor.store.clock.now(),
        conveyor.keyring.encrypt,
    )
    row = await conveyor.store.read(store.get, KIND, scope.workspace_id, change.id)
    return {**view(request, row), "secret": change.secret}


async def _check_node(scope: Scope, workflow_id: str, node: str) -> None:
    ref = await scope.conveyor.store.find_version(scope.workspace_id, workflow_id)
    if node not in {n.get("id") for n in ref.definition.get("nodes", [])}:
        raise InputError(f"response.node '{node}' is not a node of workflow '{ref.workflow_name}'")


@router.get("/webhooks/{webhook_id}", response_model=Webhook)
async def get_webhook(scope: Read, request: Request, webhook_id: str) -> dict[str, Any]:
    row = await scope.conveyor.store.read(store.get, KIND, scope.workspace_id, webhook_id)
    return view(request, row, scope.role)


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    summary="Delete: its URL answers 404 from now on (a token is never reused)",
)
async def delete_webhook(scope: Write, webhook_id: str) -> Response:
    conveyor = scope.conveyor
    await conveyor.store.write(
        store.delete, KIND, scope.workspace_id, webhook_id, conveyor.store.clock.now()
    )
    return Response(status_code=204)


async def _set_enabled(
    scope: Scope, request: Request, webhook_id: str, enabled: bool
) -> dict[str, Any]:
    conveyor = scope.conveyor
    row = await conveyor.store.write(
        store.set_enabled, KIND, scope.workspace_id, webhook_id, enabled, conveyor.store.clock.now()
    )
    return view(request, row)


@router.post("/webhooks/{webhook_id}/enable", response_model=Webhook)
async def enable_webhook(scope: Write, request: Request, webhook_id: str) -> dict[str, Any]:
    return await _set_enabled(scope, request, webhook_id, True)


@router.post(
    "/webhooks/{webhook_id}/disable",
    response_model=Webhook,
    summary="Disable: its URL answers 404 until enabled again",
)
async def disable_webhook(scope: Write, request: Request, webhook_id: str) -> dict[str, Any]:
    return await _set_enabled(scope, request, webhook_id, False)


@router.post(
    "/webhooks/{webhook_id}/secret",
    response_model=WebhookSecret,
    summary="Set the secret (a provider's) or generate one; shown only in this answer",
)
async def set_secret(scope: Write, webhook_id: str, body: SecretBody) -> dict[str, Any]:
    conveyor = scope.conveyor
    secret = await conveyor.store.write(
        store.set_secret,
        scope.workspace_id,
        webhook_id,
        body.secret,
        conveyor.store.clock.now(),
        conveyor.keyring.encrypt,
    )
    return {"id": webhook_id, "secret": secret}


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=list[WebhookDelivery],
    summary="The latest requests to a webhook, newest first, accepted or refused",
)
async def list_deliveries(
    scope: Read, webhook_id: str, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    return await scope.conveyor.store.read(
        store.list_deliveries, scope.workspace_id, webhook_id, limit
    )
