"""Executions: execute, read with progress and steps, list with filters and statistics, and
the run controls (cancel, retry, replay, pause, resume, signal)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from conveyor.api import views
from conveyor.api.auth import Scope, read_access, write_access
from conveyor.api.problems import MAX_INT
from conveyor.api.schemas import (
    Accepted,
    ControlResult,
    ExecuteBody,
    ExecutionDetail,
    ExecutionPage,
    ReplayBody,
    SignalBody,
)
from conveyor.app import Enqueued
from conveyor.errors import NotFound
from conveyor.store import statistics
from conveyor.store import workflows as workflow_store
from conveyor.store.history import ExecutionFilter, events_after, list_executions

router = APIRouter(prefix="/workspaces/{ws}", tags=["executions"])
Read = Annotated[Scope, Depends(read_access)]
Write = Annotated[Scope, Depends(write_access)]
Status = Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled", "timed_out"]


def _accepted(scope: Scope, enqueued: Enqueued) -> dict[str, Any]:
    return {
        "execution_id": enqueued.execution_id,
        "created": enqueued.created,
        "workflow_id": enqueued.workflow_id,
        "version": enqueued.version,
        "status": "queued",
        "links": views.links(scope.workspace, enqueued.execution_id),
    }


async def _detail(scope: Scope, execution_id: str) -> dict[str, Any]:
    store = scope.conveyor.store
    row = await store.get_execution(scope.workspace_id, execution_id)
    return views.execution_detail(row, store.clock.now())


@router.post(
    "/workflows/{workflow}/execute",
    status_code=202,
    response_model=Accepted,
    tags=["workflows"],
    summary="Enqueue an execution (durable when this answers)",
)
async def execute(scope: Write, workflow: str, body: ExecuteBody) -> dict[str, Any]:
    enqueued = await scope.conveyor.execute(
        workflow,
        body.input,
        version=body.version,
        idempotency_key=body.idempotency_key,
        priority=body.priority,
        trigger_type="api",
        user=scope.principal.user,
    )
    return _accepted(scope, enqueued)


@router.get(
    "/workflows/{workflow}/execute",
    response_model=ExecutionDetail,
    tags=["workflows"],
    summary="The workflow's latest execution, with progress",
)
async def latest_execution(scope: Read, workflow: str) -> dict[str, Any]:
    row = await scope.conveyor.store.read(workflow_store.get_workflow, scope.workspace_id, workflow)
    rows = await scope.conveyor.store.read(
        list_executions,
        ExecutionFilter(workspace_id=scope.workspace_id, workflow_id=row["id"], limit=1),
    )
    if not rows:
        raise NotFound(f"workflow '{row['name']}' has no executions yet")
    return await _detail(scope, rows[0]["id"])


async def _page(
    scope: Scope, f: ExecutionFilter, cursor: str | None, stats: bool
) -> dict[str, Any]:
    store = scope.conveyor.store
    limit = f.limit
    f.limit = limit + 1
    f.cursor = views.decode_cursor(cursor) if cursor else None
    rows = await store.read(list_executions, f)
    more = len(rows) > limit
    rows = rows[:limit]
    now = store.clock.now()
    page: dict[str, Any] = {
        "items": [views.execution(r, now) for r in rows],
        "has_more": more,
        "next_cursor": views.encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
        if more
        else None,
    }
    if stats:
        f.cursor, f.offset = None, 0
        page["stats"] = await store.read(statistics.list_stats, f)
    return page


Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[
    int, Query(ge=0, le=MAX_INT, description="rows to skip (after the cursor, if one is given)")
]
Text = Annotated[str | None, Query(max_length=200)]


@dataclass
class ListQuery:
    """The filters, page and stats switch every execution list takes."""

    status: Status | None = None
    trigger_type: Text = None
    user: Text = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    error: Text = None
    limit: Limit = 50
    cursor: Text = None
    offset: Offset = 0
    stats: bool = True

    def filter(self, scope: Scope, workflow_id: str | None) -> ExecutionFilter:
        return ExecutionFilter(
            workspace_id=scope.workspace_id,
            status=self.status,
            workflow_id=workflow_id,
            trigger_type=self.trigger_type,
            created_by=self.user,
            created_after=self.created_after,
            created_before=self.created_before,
            error_contains=self.error,
            limit=self.limit,
            offset=self.offset,
        )


Listing = Annotated[ListQuery, Depends()]


async def _workflow_id(scope: Scope, workflow: str) -> str:
    row = await scope.conveyor.store.read(workflow_store.get_workflow, scope.workspace_id, workflow)
    return str(row["id"])


@router.get(
    "/executions",
    response_model=ExecutionPage,
    summary="Executions, newest first, with filters and a stats block",
)
async def list_all(scope: Read, query: Listing, workflow: Text = None) -> dict[str, Any]:
    workflow_id = await _workflow_id(scope, workflow) if workflow is not None else None
    return await _page(scope, query.filter(scope, workflow_id), query.cursor, query.stats)


@router.get(
    "/workflows/{workflow}/executions",
    response_model=ExecutionPage,
    tags=["workflows"],
    summary="One workflow's executions, with filters and stats",
)
async def list_for_workflow(scope: Read, workflow: str, query: Listing) -> dict[str, Any]:
    workflow_id = await _workflow_id(scope, workflow)
    return await _page(scope, query.filter(scope, workflow_id), query.cursor, query.stats)


@router.get(
    "/workflows/{workflow}/history",
    response_model=list[ExecutionDetail],
    tags=["workflows"],
    summary="Detailed history: recent executions with their steps",
)
async def history(
    scope: Read, workflow: str, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[dict[str, Any]]:
    row = await scope.conveyor.store.read(workflow_store.get_workflow, scope.workspace_id, workflow)
    rows = await scope.conveyor.store.read(
        list_executions,
        ExecutionFilter(workspace_id=scope.workspace_id, workflow_id=row["id"], limit=limit),
    )
    return [await _detail(scope, r["id"]) for r in rows]


@router.get(
    "/executions/{execution_id}",
    response_model=ExecutionDetail,
    summary="Status, progress, live duration, and every step attempt",
)
async def get_execution(scope: Read, execution_id: str) -> dict[str, Any]:
    return await _detail(scope, execution_id)


@router.get(
    "/executions/{execution_id}/events",
    response_model=list[dict[str, Any]],
    summary="The execution's events after a sequence number",
)
async def get_events(
    scope: Read, execution_id: str, after: Annotated[int, Query(ge=0, le=2**62)] = 0
) -> list[dict[str, Any]]:
    detail = await scope.conveyor.store.get_execution(scope.workspace_id, execution_id)
    rows = await scope.conveyor.store.read(events_after, detail["id"], after)
    return [
        {"seq": r["seq"], "type": r["type"], "data": r["data"], "created_at": r["created_at"]}
        for r in rows
    ]


async def _full_id(scope: Scope, execution_id: str) -> str:
    row = await scope.conveyor.store.get_execution(scope.workspace_id, execution_id)
    return str(row["id"])


@router.post(
    "/executions/{execution_id}/cancel",
    response_model=ControlResult,
    summary="Cancel: queued or waiting at once, running within a second",
)
async def cancel(scope: Write, execution_id: str) -> dict[str, Any]:
    full = await _full_id(scope, execution_id)
    return {"execution_id": full, "status": await scope.conveyor.cancel(full)}


@router.delete(
    "/executions/{execution_id}",
    response_model=ControlResult,
    summary="Cancel (alias of POST .../cancel)",
)
async def delete(scope: Write, execution_id: str) -> dict[str, Any]:
    return await cancel(scope, execution_id)


@router.post(
    "/executions/{execution_id}/retry",
    status_code=202,
    response_model=Accepted,
    summary="Retry from the failed step: a new execution reusing what succeeded",
)
async def retry(scope: Write, execution_id: str) -> dict[str, Any]:
    full = await _full_id(scope, execution_id)
    return _accepted(scope, await scope.conveyor.retry(full, user=scope.principal.user))


@router.post(
    "/executions/{execution_id}/replay",
    status_code=202,
    response_model=Accepted,
    summary="Replay from a node, optionally with new input or on the current version",
)
async def replay(scope: Write, execution_id: str, body: ReplayBody) -> dict[str, Any]:
    enqueued = await scope.conveyor.replay(
        await _full_id(scope, execution_id),
        body.from_node,
        input=body.input,
        current=body.version == "current",
        user=scope.principal.user,
    )
    return _accepted(scope, enqueued)


@router.post("/executions/{execution_id}/pause", response_model=ControlResult)
async def pause(scope: Write, execution_id: str) -> dict[str, Any]:
    full = await _full_id(scope, execution_id)
    await scope.conveyor.pause(full)
    return {"execution_id": full, "status": "paused"}


@router.post("/executions/{execution_id}/resume", response_model=ControlResult)
async def resume(scope: Write, execution_id: str) -> dict[str, Any]:
    full = await _full_id(scope, execution_id)
    return {"execution_id": full, "status": await scope.conveyor.resume(full)}


@router.post(
    "/executions/{execution_id}/signal",
    response_model=ControlResult,
    summary="Send a signal (a wait_for_event node waiting for its name resumes)",
)
async def signal(scope: Write, execution_id: str, body: SignalBody) -> dict[str, Any]:
    full = await _full_id(scope, execution_id)
    await scope.conveyor.signal(full, body.name, body.data)
    return {"execution_id": full, "status": "signalled"}
