"""Who is calling and what they may do: bearer API keys or a session cookie, then a role
check per workspace. Another workspace's objects are always a 404, never a 403."""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Path, Query, Request, WebSocket
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from conveyor.api.audit import remember_principal, remember_workspace
from conveyor.api.throttles import Throttles
from conveyor.app import Conveyor
from conveyor.errors import Forbidden, NotFound, Unauthorized
from conveyor.store import accounts
from conveyor.store.accounts import Principal, Role
from conveyor.store.store import Store

SESSION_COOKIE = "conveyor_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
bearer = HTTPBearer(auto_error=False, description="an API key: `cvk_...`")
cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="the session cookie set by POST /api/v1/auth/login",
)


RECENT_SECONDS = 2.0  # how long another process's change to accounts may go unseen here
_RECENT_MAX = 10_000


class RecentReads:
    """What authenticating and resolving a workspace read lately (a valid API key's
    principal, a workspace's row), kept for ``RECENT_SECONDS`` so that a client sending
    many requests costs no database reads for them. An entry is dropped as soon as this
    process writes to accounts (revoking a key, changing a role, renaming a workspace:
    :attr:`Store.accounts_changes`), so a change made here applies to the next request;
    one made by another server process applies within ``RECENT_SECONDS``. Keys are kept
    by their SHA-256, never as sent."""

    def __init__(
        self, seconds: float = RECENT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self._found: dict[tuple[str, str], tuple[float, int, object]] = {}

    def get(self, conveyor: Conveyor, kind: str, key: str) -> object | None:
        found = self._found.get((kind, key))
        if found is None:
            return None
        until, changes, value = found
        if until < self.clock() or changes != conveyor.store.accounts_changes:
            self._found.pop((kind, key), None)
            return None
        return value

    def put(self, conveyor: Conveyor, kind: str, key: str, changes: int, value: object) -> None:
        """Keep ``value``, read when the store's count of account changes was ``changes``."""
        if self.seconds <= 0:
            return
        if len(self._found) >= _RECENT_MAX:
            self._found.clear()
        self._found[(kind, key)] = (self.clock() + self.seconds, changes, value)


_RECENT: weakref.WeakKeyDictionary[Store, RecentReads] = weakref.WeakKeyDictionary()


def recent(conveyor: Conveyor) -> RecentReads:
    """The recent reads of ``conveyor``'s store (one per store: every app on it shares it)."""
    found = _RECENT.get(conveyor.store)
    if found is None:
        found = _RECENT[conveyor.store] = RecentReads()
    return found


def base_app(connection: HTTPConnection) -> Conveyor:
    conveyor: Conveyor = connection.app.state.conveyor
    return conveyor


def client_address(connection: HTTPConnection) -> str:
    """The peer's address (a proxy's, unless uvicorn is told to trust its headers)."""
    return connection.client.host if connection.client is not None else "unknown"


def throttles(connection: HTTPConnection) -> Throttles:
    found: Throttles = connection.app.state.throttles
    return found


async def authenticate(
    connection: HTTPConnection, key: str | None, session: str | None
) -> Principal:
    conveyor = base_app(connection)
    now = conveyor.store.clock.now()
    found: Principal | None = None
    if key:
        # An address that sent too many invalid keys is refused before its key is even
        # looked up: guessing keys stops, and a right guess would not be told apart.
        client = client_address(connection)
        throttles(connection).check_api_key(client)
        cache, hashed = recent(conveyor), hashlib.sha256(key.encode()).hexdigest()
        kept = cache.get(conveyor, "key", hashed)
        if isinstance(kept, Principal):
            found = kept
        else:
            changes = conveyor.store.accounts_changes
            found = await conveyor.store.read(accounts.api_key_principal, key, now)
            if found is None:
                throttles(connection).api_key_failed(client)
            else:
                if found.touch and found.api_key_id is not None:
                    await conveyor.store.write(accounts.touch_api_key, found.api_key_id, now)
                cache.put(conveyor, "key", hashed, changes, replace(found, touch=False))
    elif session:
        found = await conveyor.store.read(accounts.session_principal, session, now)
    if found is None:
        raise Unauthorized("send an API key (Authorization: Bearer cvk_...) or log in")
    remember_principal(connection, found)
    return found


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: Annotated[str | None, Depends(cookie)],
) -> Principal:
    key = credentials.credentials if credentials else None
    principal = await authenticate(request, key, session)
    if not key and session and request.method not in SAFE_METHODS:
        _check_csrf(request, session)
    return principal


def _check_csrf(request: Request, session: str) -> None:
    """A browser sends the session cookie with a form posted from any site (SameSite=Lax
    stops most, not all: sibling subdomains are the same site); only our own pages know
    the token. API keys need none: no browser attaches them by itself."""
    if not accounts.csrf_matches(session, request.headers.get(CSRF_HEADER)):
        raise Forbidden(
            f"missing or wrong CSRF token: a request made with the session cookie that "
            f"changes anything carries the {CSRF_HEADER} header (the csrf_token of "
            "POST /auth/login and GET /me)"
        )


def same_origin(request: HTTPConnection) -> bool:
    """Whether the request's ``Origin`` (when a browser sent one) is this server: the host
    the request was sent to. Compared by host and port, so a proxy that ends TLS (and so
    changes the scheme) does not matter; it must pass the Host header through."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    sent_to = f"http://{request.headers.get('host', '')}"
    try:
        return _host_and_port(origin) == _host_and_port(sent_to, origin)
    except ValueError:  # a port out of range, a malformed origin ("null" included)
        return False


def _host_and_port(url: str, scheme_of: str | None = None) -> tuple[str, int]:
    """Host and port of ``url``, the default port being that of ``scheme_of``'s scheme."""
    parts = urlsplit(url)
    scheme = urlsplit(scheme_of).scheme if scheme_of else parts.scheme
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(url)
    return parts.hostname, parts.port or (443 if scheme == "https" else 80)


async def socket_caller(
    websocket: WebSocket,
    api_key: Annotated[str | None, Query(max_length=200, description="an API key")] = None,
) -> Principal:
    """WebSockets: the same credentials, or ``?api_key=`` (browsers cannot set headers).

    On the session cookie, only from this site's own pages: a browser attaches the cookie
    to a handshake from any page of the same site (sibling subdomains included) and no
    same-origin policy stops that page from reading the socket (cross-site WebSocket
    hijacking). The handshake is a GET, so no CSRF token; its ``Origin`` tells."""
    header = websocket.headers.get("authorization", "")
    key = header[7:] if header.lower().startswith("bearer ") else None
    key = key or api_key
    session = websocket.cookies.get(SESSION_COOKIE)
    if not key and session and not same_origin(websocket):
        raise Forbidden("a WebSocket on the session cookie opens from this site's pages only")
    return await authenticate(websocket, key, session)


@dataclass(frozen=True)
class Scope:
    """A request acting in one workspace with a role."""

    conveyor: Conveyor
    principal: Principal
    workspace_id: str
    workspace: str
    role: Role


async def find_workspace(conveyor: Conveyor, ws: str) -> dict[str, Any] | None:
    """The workspace named (or with the id) ``ws``, as read lately (:class:`RecentReads`)."""
    kept = recent(conveyor).get(conveyor, "workspace", ws)
    if isinstance(kept, dict):
        return kept
    changes = conveyor.store.accounts_changes
    row = await conveyor.store.read(accounts.find_workspace, ws)
    if row is not None:
        recent(conveyor).put(conveyor, "workspace", ws, changes, row)
    return row


async def resolve_scope(conveyor: Conveyor, principal: Principal, ws: str, needed: Role) -> Scope:
    """``principal`` acting in workspace ``ws`` (name or id) with at least ``needed``."""
    row = await find_workspace(conveyor, ws)
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
        found = await resolve_scope(base_app(connection), principal, ws, needed)
        remember_workspace(connection, found.workspace_id)
        return found

    return scope


read_access = workspace(Role.VIEWER)
write_access = workspace(Role.MEMBER)
admin_access = workspace(Role.ADMIN)
socket_access = workspace(Role.VIEWER, socket_caller)
