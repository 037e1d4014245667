"""Who is looking at a page: the session cookie (set by signing in), the workspace in the
URL, and the CSRF token every form and script request carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Path, Request

from conveyor import live
from conveyor.api.audit import remember_principal, remember_workspace
from conveyor.api.auth import SESSION_COOKIE, Scope, base_app, resolve_scope
from conveyor.errors import ConveyorError, Forbidden
from conveyor.store import accounts, inbox
from conveyor.store.accounts import Principal, Role

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class SignInRequired(ConveyorError):
    """No valid session: the page redirects to the sign-in page (``location``)."""

    def __init__(self, location: str) -> None:
        super().__init__("sign in first")
        self.location = location


def session_token(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def csrf_for(request: Request) -> str:
    token = session_token(request)
    return accounts.csrf_token(token) if token else ""


def check_csrf(request: Request, sent: str | None) -> None:
    """Refuse a state-changing form without the session's CSRF token."""
    token = session_token(request)
    if not token or not accounts.csrf_matches(token, sent):
        raise Forbidden("the form's CSRF token is missing or stale; reload the page and retry")


async def signed_in(request: Request) -> Principal:
    """The signed-in user, or a redirect to the sign-in page that comes back here."""
    token = session_token(request)
    store = base_app(request).store
    found = None
    if token:
        found = await store.read(accounts.session_principal, token, store.clock.now())
    if found is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(f"/signin?next={quote(target, safe='')}")
    remember_principal(request, found)
    return found


Viewer = Annotated[Principal, Depends(signed_in)]


@dataclass(frozen=True)
class Page:
    """A page request in one workspace: the API's scope plus what every page shows."""

    scope: Scope
    request: Request
    workspaces: list[dict[str, str]]
    # The inbox badge as the page is made: unread notifications, open tasks of the viewer
    # (layout.js keeps it live).
    inbox: dict[str, int]

    @property
    def can_write(self) -> bool:
        return self.scope.role.allows(Role.MEMBER)

    @property
    def can_admin(self) -> bool:
        return self.scope.role.allows(Role.ADMIN)


async def page_scope(
    request: Request,
    principal: Viewer,
    ws: Annotated[str, Path(max_length=200)],
) -> Page:
    conveyor = base_app(request)
    scope = await resolve_scope(conveyor, principal, ws, Role.VIEWER)
    remember_workspace(request, scope.workspace_id)
    ids = list(principal.roles)
    if principal.is_admin:
        ids = await conveyor.store.read(accounts.all_workspace_ids)
    workspaces = await conveyor.store.read(accounts.list_workspaces, ids)
    reader = inbox.Reader(principal.user_id, principal.email)
    counts = await conveyor.store.read(inbox.counts, scope.workspace_id, reader)
    return Page(scope, request, workspaces, counts)


InWorkspace = Annotated[Page, Depends(page_scope)]


async def live_after(request: Request, page: InWorkspace) -> int:
    """The event id a live page reflects: its workspace stream starts after it (``?after=``),
    so an event between the page's reads and the stream's start is not missed. It is the
    process feed's settled frontier (every event up to it is committed and readable), taken
    before the page reads anything: a page handler takes it right after ``InWorkspace``.
    An event both rendered and replayed is applied twice, which the scripts allow."""
    feed: live.Feed = request.app.state.feed
    async with feed.subscribe(live.workspace(page.scope.workspace_id)) as subscription:
        assert subscription.start is not None
        return subscription.start


LiveAfter = Annotated[int, Depends(live_after)]


def require(page: Page, needed: Role) -> None:
    """Controls are hidden from roles that may not use them; the server refuses anyway."""
    if not page.scope.role.allows(needed):
        raise Forbidden(
            f"your role in '{page.scope.workspace}' is {page.scope.role.value}; "
            f"this needs {needed.value} or above"
        )
