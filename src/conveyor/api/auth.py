"""Who is calling and what they may do: bearer API keys or a session cookie, then a role
check per workspace. Another workspace's objects are always a 404, never a 403."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request, WebSocket
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from conveyor.app import Conveyor
from conveyor.errors import Forbidden, NotFound, Unauthorized
from conveyor.store import accounts
from conveyor.store.accounts import Principal, Role

SESSION_COOKIE = "conveyor_session"
bearer = HTTPBearer(auto_error=False, description="an API key: `cvk_...`")
cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="the session cookie set by POST /api/v1/auth/login",
)


def base_app(connection: HTTPConnection) -> Conveyor:
    conveyor: Conveyor = connection.app.state.conveyor
    return conveyor


async def _principal(connection: HTTPConnection, key: str | None, session: str | None) -> Principal:
    conveyor = base_app(connection)
    now = conveyor.store.clock.now()
    found: Principal | None = None
    if key:
        found = await conveyor.store.read(accounts.api_key_principal, key, now)
        if found is not None and found.touch and found.api_key_id is not None:
            await conveyor.store.write(accounts.touch_api_key, found.api_key_id, now)
    elif session:
        found = await conveyor.store.read(accounts.session_principal, session, now)
    if found is None:
        raise Unauthorized("send an API key (Authorization: Bearer cvk_...) or log in")
    return found


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: Annotated[str | None, Depends(cookie)],
) -> Principal:
    return await _principal(request, credentials.credentials if credentials else None, session)


async def socket_caller(
    websocket: WebSocket,
    api_key: Annotated[str | None, Query(max_length=200, description="an API key")] = None,
) -> Principal:
    """WebSockets: the same credentials, or ``?api_key=`` (browsers cannot set headers)."""
    header = websocket.headers.get("authorization", "")
    key = header[7:] if header.lower().startswith("bearer ") else None
    return await _principal(websocket, key or api_key, websocket.cookies.get(SESSION_COOKIE))


@dataclass(frozen=True)
class Scope:
    """A request acting in one workspace with a role."""

    conveyor: Conveyor
    principal: Principal
    workspace_id: str
    workspace: str
    role: Role


async def resolve_scope(conveyor: Conveyor, principal: Principal, ws: str, needed: Role) -> Scope:
    """``principal`` acting in workspace ``ws`` (name or id) with at least ``needed``."""
    row = await conveyor.store.read(accounts.find_workspace, ws)
    role = principal.role_in(row["id"]) if row else None
    if row is not None and role is None and principal.is_admin and not principal.api_key_id:
        role = Role.OWNER
    if row is None or role is None:
        raise NotFound(f"workspace '{ws}' not found")
    if not role.allows(needed):
        raise Forbidden(
            f"your role in '{row['name']}' is {role.value}; this needs {needed.value} or above"
        )
    return Scope(conveyor.scoped(row["id"]), principal, row["id"], row["name"], role)


def workspace(
    needed: Role, who: Callable[..., Awaitable[Principal]] = caller
) -> Callable[..., Awaitable[Scope]]:
    """Dependency: the ``{ws}`` path workspace, if the caller may act there with ``needed``."""

    async def scope(
        connection: HTTPConnection,
        ws: Annotated[str, Path(description="workspace name or id", max_length=200)],
        # A default, not an annotation: annotations are strings resolved in this module's
        # globals, where the closure's ``who`` does not exist.
        principal: Principal = Depends(who),  # noqa: B008
    ) -> Scope:
        return await resolve_scope(base_app(connection), principal, ws, needed)

    return scope


read_access = workspace(Role.VIEWER)
write_access = workspace(Role.MEMBER)
admin_access = workspace(Role.ADMIN)
socket_access = workspace(Role.VIEWER, socket_caller)
