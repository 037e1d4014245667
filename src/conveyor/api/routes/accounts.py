"""Login, the caller, workspaces, members and API keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.audit import note, remember_principal
from conveyor.api.auth import (
    SESSION_COOKIE,
    Scope,
    admin_access,
    base_app,
    caller,
    client_address,
    read_access,
    same_origin,
    throttles,
)
from conveyor.api.bodies import JsonRoute
from conveyor.errors import Forbidden, InputError, Unauthorized
from conveyor.nodes.addresses import parse_allowlist
from conveyor.store import accounts
from conveyor.store.accounts import Principal, Role
from conveyor.store.workflows import workspace_id

router = APIRouter(tags=["accounts"], route_class=JsonRoute)
SESSION_TTL = timedelta(days=7)
Caller = Annotated[Principal, Depends(caller)]
Admin = Annotated[Scope, Depends(admin_access)]
Read = Annotated[Scope, Depends(read_access)]


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1000)


class NewWorkspace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9-]*$")


class WorkspaceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_running_per_user: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="at most this many running executions per user (null: no limit); "
        "applies to executions enqueued from now on",
    )
    outbound_allowlist: list[str] | None = Field(
        None,
        max_length=200,
        description="hosts (example.com, *.example.com) and networks (10.1.0.0/16) this "
        "workspace's steps may connect to; narrows the server's own rules, never widens "
        "them; empty: no list of its own",
    )


def _workspace(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "max_running_per_user": row["max_running_per_user"],
        "outbound_allowlist": list(row.get("outbound_allowlist") or []),
    }


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    role: Role


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.MEMBER


def _me(principal: Principal, names: dict[str, str], session: str | None) -> dict[str, Any]:
    """``csrf_token``: for a caller signed in with the session cookie, what every request
    of theirs that changes anything sends as ``X-CSRF-Token`` (null for API keys)."""
    return {
        "id": principal.user_id,
        "email": principal.email,
        "is_admin": principal.is_admin,
        "workspaces": [
            {"id": w, "name": names.get(w, w), "role": r.value} for w, r in principal.roles.items()
        ],
        "csrf_token": accounts.csrf_token(session) if session else None,
    }


async def _names(request: Request, principal: Principal) -> dict[str, str]:
    store = base_app(request).store
    found = {}
    for ws in principal.roles:
        row = await store.read(accounts.find_workspace, ws)
        if row:
            found[ws] = row["name"]
    return found


@router.post(
    "/auth/login",
    summary="Log in; sets the session cookie the dashboard uses and returns its CSRF token",
)
async def login(request: Request, body: Login, response: Response) -> dict[str, Any]:
    """Refused from a page of another site (its ``Origin``), so that no site can sign a
    visitor in to an account of its choosing."""
    if not same_origin(request):
        raise Forbidden("cross-origin login refused: the Origin header names another site")
    store = base_app(request).store
    now = store.clock.now()
    limits, client = throttles(request), client_address(request)
    limits.signin_attempt(body.email, client)
    user_id = await store.write(accounts.authenticate, body.email, body.password, now)
    if user_id is None:
        note(request, action="signin.failed", actor=body.email, always=True)
        raise Unauthorized("wrong email or password")
    limits.signin_succeeded(body.email, client)
    token = await store.write(accounts.create_session, user_id, now, SESSION_TTL)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    principal = await store.read(accounts.principal, user_id)
    assert principal is not None
    remember_principal(request, principal)
    return _me(principal, await _names(request, principal), token)


@router.post("/auth/logout", status_code=204)
async def logout(request: Request, principal: Caller, response: Response) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await base_app(request).store.write(accounts.end_session, token)
    response.delete_cookie(SESSION_COOKIE)


@router.get("/me", summary="The caller, their workspaces and (for a session) its CSRF token")
async def me(request: Request, principal: Caller) -> dict[str, Any]:
    session = request.cookies.get(SESSION_COOKIE) if principal.api_key_id is None else None
    return _me(principal, await _names(request, principal), session)


@router.post("/workspaces", status_code=201, summary="Create a workspace; you become owner")
async def create_workspace(
    request: Request, principal: Caller, body: NewWorkspace
) -> dict[str, Any]:
    if principal.api_key_id:
        raise Forbidden("API keys act inside one workspace; log in to create workspaces")
    store = base_app(request).store
    now = store.clock.now()
    if await store.read(accounts.find_workspace, body.name):
        raise InputError(f"a workspace named '{body.name}' already exists")
    ws = await store.write(workspace_id, body.name, now)
    await store.write(accounts.set_role, principal.user_id, ws, Role.OWNER, now)
    note(request, workspace_id=ws, target_id=ws, details={"name": body.name})
    return {"id": ws, "name": body.name, "role": "owner"}


@router.get("/workspaces/{ws}", summary="The workspace and its settings")
async def get_workspace(scope: Read) -> dict[str, Any]:
    row = await scope.conveyor.store.read(accounts.find_workspace, scope.workspace_id)
    assert row is not None  # the scope found it
    return _workspace(row)


@router.patch("/workspaces/{ws}", summary="Change the workspace's settings (admin)")
async def update_workspace(scope: Admin, body: WorkspaceSettings) -> dict[str, Any]:
    store = scope.conveyor.store
    if "max_running_per_user" in body.model_fields_set:
        await store.write(
            accounts.set_max_running_per_user, scope.workspace_id, body.max_running_per_user
        )
    if "outbound_allowlist" in body.model_fields_set:
        entries = [e.strip() for e in body.outbound_allowlist or [] if e.strip()]
        parse_allowlist(tuple(entries))  # a malformed entry: 400 naming it
        await store.write(accounts.set_outbound_allowlist, scope.workspace_id, entries)
    return await get_workspace(scope)


@router.get("/workspaces/{ws}/members", summary="The workspace's members and their roles")
async def list_members(scope: Read) -> list[dict[str, Any]]:
    return await scope.conveyor.store.read(accounts.list_members, scope.workspace_id)


@router.put("/workspaces/{ws}/members", summary="Add a user to the workspace or change their role")
async def set_member(request: Request, scope: Admin, body: Member) -> dict[str, Any]:
    note(request, details={"email": body.email, "role": body.role.value})
    store = scope.conveyor.store
    return await store.write(
        accounts.grant, scope.workspace_id, scope.role, body.email, body.role, store.clock.now()
    )


@router.delete(
    "/workspaces/{ws}/members/{user_id}",
    status_code=204,
    summary="Remove a member (a workspace keeps at least one owner)",
)
async def remove_member(scope: Admin, user_id: str) -> None:
    await scope.conveyor.store.write(accounts.ungrant, scope.workspace_id, scope.role, user_id)


@router.get("/workspaces/{ws}/api-keys", summary="API keys (never the keys themselves)")
async def list_keys(scope: Admin) -> list[dict[str, Any]]:
    return await scope.conveyor.store.read(accounts.list_api_keys, scope.workspace_id)


@router.post(
    "/workspaces/{ws}/api-keys",
    status_code=201,
    summary="Create an API key; the key is in this answer and nowhere else",
)
async def create_key(request: Request, scope: Admin, body: NewKey) -> dict[str, Any]:
    accounts.check_key_role(scope.role, body.role)
    store = scope.conveyor.store
    key, row = await store.write(
        accounts.create_api_key,
        scope.workspace_id,
        scope.principal.user_id,
        body.name,
        body.role,
        store.clock.now(),
    )
    note(request, target_id=row["id"], details={"name": body.name, "role": body.role.value})
    return {**row, "key": key}


@router.delete("/workspaces/{ws}/api-keys/{key_id}", status_code=204)
async def revoke_key(scope: Admin, key_id: str) -> None:
    await scope.conveyor.store.write(
        accounts.revoke_api_key,
        scope.workspace_id,
        scope.role,
        key_id,
        scope.conveyor.store.clock.now(),
    )
