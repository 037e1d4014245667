"""Executions: execute, read with progress and steps (or a summary, big payloads left to a
download), list and count with filters and statistics, the run controls (cancel, retry,
replay, pause, resume, signal) and the same on many executions at once (bulk)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from conveyor import failpoints
from conveyor.api import problems, views
from conveyor.api.audit import note
from conveyor.api.auth import Scope, read_access, write_access
from conveyor.api.bodies import JsonRoute
from conveyor.api.problems import MAX_INT
from conveyor.api.schemas import (
    Accepted,
    BatchAccepted,
    BulkBody,
    BulkResult,
    ControlResult,
    ExecuteBody,
    ExecuteRequest,
    ExecutionDetail,
    ExecutionPage,
    ExecutionQuery,
    ReplayBody,
    SignalBody,
    StatusCounts,
    StatusName,
    UtcDatetime,
)
from conveyor.app import BULK_BATCH, BULK_LIMIT, BulkAction, Enqueued, Selection, Submission
from conveyor.errors import ConveyorError, InputError, NotFound
from conveyor.store import statistics
from conveyor.store import workflows as workflow_store
from conveyor.store.history import ExecutionFilter, events_after, list_executions, step_payload
from conveyor.store.tables import dumps

router = APIRouter(prefix="/workspaces/{ws}", tags=["executions"], route_class=JsonRoute)
Read = Annotated[Scope, Depends(read_access)]
Write = Annotated[Scope, Depends(write_access)]
Status = StatusName


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
    response_model=Accepted | BatchAccepted,
    tags=["workflows"],
    summary="Enqueue an execution, or a list of them (durable when this answers)",
    description="One object enqueues one execution. A list enqueues many in one "
    "transaction, each with its own input, idempotency key and priority (one version for "
    "all): the answer lists each item in order, queued or refused with its own problem.",
)
async def execute(
    request: Request, scope: Write, workflow: str, body: ExecuteRequest
) -> dict[str, Any]:
    if isinstance(body, list):
        return await _execute_batch(request, scope, workflow, body)
    enqueued = await scope.conveyor.execute(
        workflow,
        body.input,
        version=body.version,
        idempotency_key=body.idempotency_key,
        priority=body.priority,
        trigger_type="api",
        user=scope.principal.user,
    )
    note(
        request,
        target_type="execution",
        target_id=enqueued.execution_id,
        details={"workflow": workflow, "version": enqueued.version, "created": enqueued.created},
    )
    await failpoints.reached("execute.after_commit")
    return _accepted(scope, enqueued)


async def _execute_batch(
    request: Request, scope: Scope, workflow: str, batch: list[ExecuteBody]
) -> dict[str, Any]:
    versions = {item.version for item in batch}
    if len(versions) > 1:
        raise InputError("the items of a batch name one version (or none)")
    results = await scope.conveyor.execute_many(
        workflow,
        [Submission(i.input, i.idempotency_key, i.priority) for i in batch],
        version=(asked := versions.pop()),
        trigger_type="api",
        user=scope.principal.user,
    )
    items: list[dict[str, Any]] = []
    found: Enqueued | None = None
    for result in results:
        if isinstance(result, ConveyorError):
            items.append({"status": "refused", "problem": problems.problem_body(result)})
            continue
        found = result
        items.append(
            {
                "status": "queued",
                "execution_id": result.execution_id,
                "created": result.created,
                "links": views.links(scope.workspace, result.execution_id),
            }
        )
    created = sum(bool(i.get("created")) for i in items)
    refused = sum(i["status"] == "refused" for i in items)
    note(
        request,
        target_type="workflow",
        target_id=workflow,
        details={"executions": len(items), "created": created, "refused": refused},
    )
    await failpoints.reached("execute.after_commit")
    if found is None:  # every item refused: the workflow and version as found
        ref = await scope.conveyor.store.find_version(scope.workspace_id, workflow, asked)
        workflow_id, version = ref.workflow_id, ref.version
    else:
        workflow_id, version = found.workflow_id, found.version
    return {
        "workflow_id": workflow_id,
        "version": version,
        "created": created,
        "refused": refused,
        "items": items,
    }


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
Statuses = Annotated[
    list[Status] | None,
    Query(description="any of these statuses (repeat it: ?status=failed&status=timed_out)"),
]


@dataclass
class FilterQuery:
    """The filters every execution list, count and bulk selection takes."""

    status: Statuses = None
    trigger_type: Annotated[
        str | None,
        Query(
            max_length=200,
            description="manual, api, schedule, webhook, retry, replay or workflow",
        ),
    ] = None
    trigger_id: Annotated[
        str | None, Query(max_length=32, description="the schedule or webhook that started it")
    ] = None
    user: Annotated[str | None, Query(max_length=200, description="a user id or email")] = None
    created_after: UtcDatetime | None = None
    created_before: UtcDatetime | None = None
    error: Annotated[str | None, Query(max_length=200, description="text in the error")] = None
    q: Annotated[
        str | None, Query(max_length=200, description="text in the error or the input, any case")
    ] = None

    def filter(self, scope: Scope, workflow_id: str | None) -> ExecutionFilter:
        return ExecutionFilter(
            workspace_id=scope.workspace_id,
            status=self.status or None,
            workflow_id=workflow_id,
            trigger_type=self.trigger_type,
            trigger_id=self.trigger_id,
            created_by=self.user,
            created_after=self.created_after,
            created_before=self.created_before,
            error_contains=self.error,
            search=self.q,
        )


@dataclass
class ListQuery(FilterQuery):
    """The filters, page and stats switch every execution list takes."""

    limit: Limit = 50
    cursor: Text = None
    offset: Offset = 0
    stats: bool = True

    def filter(self, scope: Scope, workflow_id: str | None) -> ExecutionFilter:
        f = super().filter(scope, workflow_id)
        f.limit, f.offset = self.limit, self.offset
        return f


Listing = Annotated[ListQuery, Depends()]
Filtering = Annotated[FilterQuery, Depends()]


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
    "/executions/counts",
    response_model=StatusCounts,
    summary="Counts by status for a filter (cheap: what a live monitor re-reads)",
)
async def counts(scope: Read, query: Filtering, workflow: Text = None) -> dict[str, Any]:
    workflow_id = await _workflow_id(scope, workflow) if workflow is not None else None
    return await scope.conveyor.store.read(statistics.counts, query.filter(scope, workflow_id))


@router.post(
    "/executions/bulk",
    response_model=BulkResult,
    summary="Cancel, retry or replay many executions (by ids or by filter); dry_run counts",
    description=(
        "Acts on the executions the action applies to: cancel the queued, running and "
        "waiting ones; retry the failed, cancelled and timed-out ones; replay (from "
        "`from_node`) the finished ones. With `dry_run` nothing changes and the answer says "
        "how many it would touch (`eligible`). A run is synchronous, in batches of "
        f"{BULK_BATCH} executions, each its own transaction: what it did is kept if the "
        "request is cut off, and others' work goes on between batches. More than "
        f"{BULK_LIMIT} executions to act on is a 400 (the dry run shows `eligible` and "
        "`limit`). A bulk retry or replay is not idempotent: running it twice makes new "
        "executions twice."
    ),
)
async def bulk(request: Request, scope: Write, body: BulkBody) -> dict[str, Any]:
    selection: Selection
    if body.filter is not None:
        selection = await _selection(scope, body.filter)
    else:
        selection = list(body.ids or [])
    action = BulkAction(
        body.action,
        from_node=body.from_node,
        current=body.version == "current",
        user=scope.principal.user,
    )
    outcome = await scope.conveyor.bulk(action, selection, dry_run=body.dry_run)
    result = asdict(outcome)
    counts = {k: v for k, v in result.items() if isinstance(v, int) and not isinstance(v, bool)}
    note(request, details={"action": body.action, "dry_run": body.dry_run, **counts})
    result["errors"] = [{"execution_id": i, "detail": d} for i, d in outcome.errors]
    return result


async def _selection(scope: Scope, query: ExecutionQuery) -> ExecutionFilter:
    workflow_id = await _workflow_id(scope, query.workflow) if query.workflow else None
    status = [query.status] if isinstance(query.status, str) else query.status
    return FilterQuery(
        status=status,
        trigger_type=query.trigger_type,
        trigger_id=query.trigger_id,
        user=query.user,
        created_after=query.created_after,
        created_before=query.created_before,
        error=query.error,
        q=query.q,
    ).filter(scope, workflow_id)


SUMMARY_BYTES = 64 * 1024


@router.get(
    "/executions/{execution_id}",
    response_model=ExecutionDetail,
    summary="Status, progress, live duration, and every step attempt",
)
async def get_execution(
    scope: Read,
    execution_id: str,
    summary: Annotated[
        bool,
        Query(
            description=f"replace each step input, output, error or logs over "
            f"{SUMMARY_BYTES // 1024} KiB by {{truncated: true, bytes: N}} (download it "
            "from .../steps/{node_id}/{part})"
        ),
    ] = False,
) -> dict[str, Any]:
    store = scope.conveyor.store
    row = await store.get_execution(
        scope.workspace_id, execution_id, max_payload_bytes=SUMMARY_BYTES if summary else None
    )
    return views.execution_detail(row, store.clock.now())


@router.get(
    "/executions/{execution_id}/steps/{node_id}/{part}",
    response_class=Response,
    responses={
        200: {
            "description": "the JSON value, as a file to save",
            "content": {"application/json": {"schema": {}}},
        }
    },
    summary="One step attempt's full input, output, error or logs, as a download",
)
async def download_step_payload(
    scope: Read,
    execution_id: str,
    node_id: Annotated[str, Path(max_length=100)],
    part: Literal["input", "output", "error", "logs"],
    attempt: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="the latest attempt if not given")
    ] = None,
) -> Response:
    found, value = await scope.conveyor.store.read(
        step_payload, scope.workspace_id, execution_id, node_id, part, attempt
    )
    name = "-".join(
        _safe(str(x)) for x in (found["execution_id"], found["node_id"], found["attempt"], part)
    )
    return Response(
        content=dumps(value),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}.json"'},
    )


def _safe(text: str) -> str:
    """A file name part with only letters, digits, dots, dashes and underscores."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


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
