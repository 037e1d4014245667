"""The inbox page: the notifications addressed to you or the workspace (unread first in
view, all on request) and the tasks steps made (yours, all open, done), with plain forms
that mark read, mark all read, mark done and reopen: the same store queries as
``/api/v1/workspaces/{ws}/notifications`` and ``/tasks``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse

from conveyor.store import inbox
from conveyor.store.accounts import Role
from conveyor.store.inbox import Reader
from conveyor.web.render import render
from conveyor.web.session import CSRF_FIELD, InWorkspace, Page, check_csrf, require

router = APIRouter()
CsrfField = Annotated[str, Form(alias=CSRF_FIELD, max_length=200)]
Shown = Literal["unread", "all"]
TaskView = Literal["mine", "open", "done"]
SHOWN = 100


def reader(page: Page) -> Reader:
    return Reader(page.scope.principal.user_id, page.scope.principal.email)


def _back(page: Page) -> RedirectResponse:
    """Back to the inbox as it was shown (its query string rides in the Referer)."""
    query = page.request.url.query or ""
    base = f"/w/{page.scope.workspace}/inbox"
    return RedirectResponse(f"{base}?{query}" if query else base, 303)


@router.get("/w/{ws}/inbox")
async def inbox_page(
    page: InWorkspace,
    show: Annotated[Shown, Query()] = "unread",
    tasks: Annotated[TaskView, Query()] = "mine",
) -> HTMLResponse:
    store = page.scope.conveyor.store
    ws = page.scope.workspace_id
    who = reader(page)
    notifications = await store.read(
        inbox.list_notifications, ws, who, unread=show == "unread", limit=SHOWN
    )
    found = await store.read(
        inbox.list_tasks,
        ws,
        status="done" if tasks == "done" else "open",
        assignee=who if tasks == "mine" else None,
        limit=SHOWN,
    )
    context = {
        "page": page,
        "nav": "inbox",
        "title": "Inbox",
        "notifications": notifications,
        "tasks": found,
        "show": show,
        "task_view": tasks,
        "query": page.request.url.query,
    }
    return render(page.request, "inbox.html", context)


@router.post("/w/{ws}/inbox/notifications/{notification_id}/read")
async def read_notification(
    page: InWorkspace, notification_id: str, csrf: CsrfField = ""
) -> RedirectResponse:
    check_csrf(page.request, csrf)
    require(page, Role.MEMBER)
    store = page.scope.conveyor.store
    await store.write(
        inbox.mark_read, page.scope.workspace_id, reader(page), notification_id, store.clock.now()
    )
    return _back(page)


@router.post("/w/{ws}/inbox/notifications/read-all")
async def read_all(page: InWorkspace, csrf: CsrfField = "") -> RedirectResponse:
    check_csrf(page.request, csrf)
    require(page, Role.MEMBER)
    store = page.scope.conveyor.store
    await store.write(inbox.mark_all_read, page.scope.workspace_id, reader(page), store.clock.now())
    return _back(page)


@router.post("/w/{ws}/inbox/tasks/{task_id}/{action}")
async def set_task(
    page: InWorkspace, task_id: str, action: Literal["done", "reopen"], csrf: CsrfField = ""
) -> RedirectResponse:
    check_csrf(page.request, csrf)
    require(page, Role.MEMBER)
    store = page.scope.conveyor.store
    await store.write(
        inbox.set_task_status,
        page.scope.workspace_id,
        task_id,
        "done" if action == "done" else "open",
        page.scope.principal.user_id,
        store.clock.now(),
    )
    return _back(page)
