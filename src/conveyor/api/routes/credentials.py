"""Credentials: list, create, replace, delete, and the types there are.

Write-only: a secret field's value is accepted and never returned (not even to the user
who set it). Viewers may list; members change. Values are sealed before they are stored.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from conveyor import credentials as kinds
from conveyor.api.audit import note
from conveyor.api.auth import Scope, read_access, write_access
from conveyor.api.bodies import JsonRoute
from conveyor.api.schemas import Credential, CredentialBody, CredentialReplace, CredentialType
from conveyor.store import credentials as store

router = APIRouter(prefix="/workspaces/{ws}", tags=["credentials"], route_class=JsonRoute)
Read = Annotated[Scope, Depends(read_access)]
Write = Annotated[Scope, Depends(write_access)]


@router.get("/credential-types", response_model=list[CredentialType])
async def credential_types(scope: Read) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "title": t.title,
            "fields": [
                {
                    "name": f.name,
                    "secret": f.secret,
                    "required": f.required,
                    "default": f.default,
                    "choices": list(f.choices),
                    "description": f.description,
                }
                for f in t.fields
            ],
        }
        for t in kinds.TYPES.values()
    ]


@router.get("/credentials", response_model=list[Credential])
async def list_credentials(scope: Read) -> list[dict[str, Any]]:
    return await scope.conveyor.store.read(store.listing, scope.workspace_id)


@router.get("/credentials/{name}", response_model=Credential)
async def get_credential(scope: Read, name: str) -> dict[str, Any]:
    return await scope.conveyor.store.read(store.get, scope.workspace_id, name)


@router.post(
    "/credentials",
    response_model=Credential,
    status_code=201,
    summary="Create a credential (its secret fields are never returned)",
)
async def create_credential(request: Request, scope: Write, body: CredentialBody) -> dict[str, Any]:
    note(request, target_id=body.name, details={"type": body.type})
    return await scope.conveyor.set_credential(
        body.name,
        body.type,
        body.data,
        description=body.description,
        user_id=scope.principal.user_id,
    )


@router.put(
    "/credentials/{name}",
    response_model=Credential,
    summary="Replace a credential's fields (all of them: none is read back)",
)
async def replace_credential(scope: Write, name: str, body: CredentialReplace) -> dict[str, Any]:
    conveyor = scope.conveyor

    def write(conn: Any) -> dict[str, Any]:
        return store.replace(
            conn,
            scope.workspace_id,
            name,
            body.type,
            body.data,
            body.description,
            scope.principal.user_id,
            conveyor.store.clock.now(),
            conveyor.keyring.encrypt,
        )

    return await conveyor.store.write(write)


@router.delete("/credentials/{name}", status_code=204)
async def delete_credential(scope: Write, name: str) -> Response:
    await scope.conveyor.delete_credential(name)
    return Response(status_code=204)
