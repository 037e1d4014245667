"""The inbox: notifications (list, mark read, mark all read) and tasks (list, mark done,
reopen) that notify and task.create steps made, and the counts the dashboard's badge shows.
A notification addressed to one member is that member's alone: to anyone else it is a 404."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from conveyor.api.auth import Scope, read_access, write_access
from conveyor.api.bodies import JsonRoute
from conveyor.store import inbox
from conveyor.store.inbox import LIST_LIMIT, Reader

router = APIRouter(prefix="/workspaces/{ws}", tags=["inbox"], route_class=JsonRoute)
Read = Annotated[Scope, Depends(read_access)]
Write = Annotated[Scope, Depends(write_access)]
Limit = Annotated[int, Query(ge=1, le=LIST_LIMIT, description="at most this many")]
Before = Annotated[
    str | None, Query(max_length=32, description="only older than this id (the next page)")
]


class Notification(BaseModel):
    id: str
    execution_id: str | None = Field(description="the execution whose step sent it")
    node_id: str | None
    workflow_name: str | None
    channel: str
    title: str
    message: str
    data: Any = None
    recipient_id: str | None = Field(description="the user it is for; null: the workspace")
    created_at: datetime
    read_at: datetime | None
    read_by: str | None = Field(description="the user who marked it read")


class Task(BaseModel):
    id: str
    execution_id: str | None = Field(description="the execution whose step made it")
    node_id: str | None
    workflow_name: str | None
    title: str
    body: str
    assignee_id: str | None = Field(description="the assigned member's user id")
    assignee_email: str | None
    due_at: datetime | None
    status: Literal["open", "done"]
    created_at: datetime
    done_at: datetime | None
    done_by: str | None = Field(description="the user who marked it done")


class InboxCounts(BaseModel):
    unread: int = Field(description="unread notifications addressed to you or the workspace")
    open_tasks: int = Field(description="open tasks assigned to you")


class ReadAll(BaseModel):
    marked: int = Field(description="notifications marked read now")
    counts: InboxCounts


def reader(scope: Scope) -> Reader:
    return Reader(scope.principal.user_id, scope.principal.email)


@router.get("/inbox", response_model=InboxCounts, summary="Your unread and open counts")
async def inbox_counts(scope: Read) -> dict[str, int]:
    return await scope.conveyor.store.read(inbox.counts, scope.workspace_id, reader(scope))


@router.get(
    "/notifications",
    response_model=list[Notification],
    summary="Notifications addressed to you or the workspace, newest first",
)
async def list_notifications(
    scope: Read,
    unread: Annotated[bool, Query(description="only unread ones")] = False,
    before: Before = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    return await scope.conveyor.store.read(
        inbox.list_notifications,
        scope.workspace_id,
        reader(scope),
        unread=unread,
        before=before,
        limit=limit,
    )


@router.post(
    "/notifications/{notification_id}/read",
    response_model=Notification,
    summary="Mark read (for everyone it is addressed to); again: no change",
)
async def read_notification(scope: Write, notification_id: str) -> dict[str, Any]:
    store = scope.conveyor.store
    return await store.write(
        inbox.mark_read, scope.workspace_id, reader(scope), notification_id, store.clock.now()
    )


@router.post(
    "/notifications/read-all",
    response_model=ReadAll,
    summary="Mark every unread notification addressed to you or the workspace read",
)
async def read_all_notifications(scope: Write) -> dict[str, Any]:
    store = scope.conveyor.store
    who = reader(scope)
    marked = await store.write(inbox.mark_all_read, scope.workspace_id, who, store.clock.now())
    return {"marked": marked, "counts": await store.read(inbox.counts, scope.workspace_id, who)}


@router.get("/tasks", response_model=list[Task], summary="Tasks, newest first")
async def list_tasks(
    scope: Read,
    status: Annotated[Literal["open", "done", "all"], Query()] = "open",
    assignee: Annotated[
        str | None,
        Query(max_length=320, description="`me` (by user id or email), or an email"),
    ] = None,
    before: Before = None,
    limit: Limit = 50,
) -> list[dict[str, Any]]:
    who: Reader | str | None = reader(scope) if assignee == "me" else assignee
    return await scope.conveyor.store.read(
        inbox.list_tasks,
        scope.workspace_id,
        status=inbox.parse_status(status),
        assignee=who,
        before=before,
        limit=limit,
    )


@router.get("/tasks/{task_id}", response_model=Task, summary="One task")
async def get_task(scope: Read, task_id: str) -> dict[str, Any]:
    return await scope.conveyor.store.read(inbox.get_task, scope.workspace_id, task_id)


@router.post("/tasks/{task_id}/done", response_model=Task, summary="Mark done (you, now)")
async def task_done(scope: Write, task_id: str) -> dict[str, Any]:
    return await _set(scope, task_id, "done")


@router.post("/tasks/{task_id}/reopen", response_model=Task, summary="Open again")
async def task_reopen(scope: Write, task_id: str) -> dict[str, Any]:
    return await _set(scope, task_id, "open")


async def _set(scope: Scope, task_id: str, status: inbox.TaskStatus) -> dict[str, Any]:
    store = scope.conveyor.store
    return await store.write(
        inbox.set_task_status,
        scope.workspace_id,
        task_id,
        status,
        scope.principal.user_id,
        store.clock.now(),
    )
