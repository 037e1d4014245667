"""Statistics over a time range: executions per bucket of time, per workflow, per user."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from conveyor.api.auth import Scope, read_access
from conveyor.api.bodies import JsonRoute
from conveyor.api.schemas import Timeseries, UserStats, UtcDatetime, WorkflowRangeStats
from conveyor.errors import InputError
from conveyor.store import statistics
from conveyor.store import workflows as workflow_store
from conveyor.store.history import ExecutionFilter

router = APIRouter(prefix="/workspaces/{ws}/stats", tags=["statistics"], route_class=JsonRoute)
Read = Annotated[Scope, Depends(read_access)]
DEFAULT_RANGE = timedelta(hours=24)
From = Annotated[
    UtcDatetime | None,
    Query(alias="from", description="start of the range (default: 24 hours before 'to')"),
]
To = Annotated[UtcDatetime | None, Query(alias="to", description="end of the range (now)")]
Text = Annotated[str | None, Query(max_length=200)]


def _range(scope: Scope, start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or scope.conveyor.store.clock.now()
    if start is None:
        try:
            start = end - DEFAULT_RANGE
        except OverflowError:  # 'to' in the first day of year 1
            start = end
    if end <= start:
        raise InputError("the range is empty: 'from' must be before 'to'")
    return start, end


async def _filter(
    scope: Scope, start: datetime, end: datetime, workflow: str | None, user: str | None
) -> ExecutionFilter:
    workflow_id = None
    if workflow is not None:
        row = await scope.conveyor.store.read(
            workflow_store.get_workflow, scope.workspace_id, workflow
        )
        workflow_id = str(row["id"])
    return ExecutionFilter(
        workspace_id=scope.workspace_id,
        workflow_id=workflow_id,
        created_by=user,
        created_after=start,
        created_before=end,
    )


@router.get(
    "/timeseries",
    response_model=Timeseries,
    summary="Executions, successes, failures and duration p50/p95 per bucket of time",
    description=(
        "Executions are counted in the bucket of their creation time; `failed` counts the "
        "failed and the timed-out ones. Without `bucket`, the finest of minute, hour and day "
        f"that cuts the range into at most {statistics.MAX_BUCKETS} buckets; a bucket that "
        "would give more is a 400. Buckets start on whole UTC minutes, hours or days."
    ),
)
async def timeseries(
    scope: Read,
    start: From = None,
    end: To = None,
    bucket: Literal["minute", "hour", "day"] | None = None,
    workflow: Annotated[str | None, Query(max_length=200, description="name or id")] = None,
    user: Annotated[str | None, Query(max_length=200, description="user id or email")] = None,
) -> dict[str, Any]:
    start, end = _range(scope, start, end)
    span = statistics.time_range(start, end, bucket)
    f = await _filter(scope, start, end, workflow, user)
    store = scope.conveyor.store
    buckets = await store.read(statistics.timeseries, store.db.dialect, f, span)
    return {"from": start, "to": end, "bucket": span.unit, "buckets": buckets}


@router.get(
    "/workflows",
    response_model=list[WorkflowRangeStats],
    summary="Per workflow over a time range: executions, success rate, p50/p95, usage",
)
async def workflow_stats(scope: Read, start: From = None, end: To = None) -> list[dict[str, Any]]:
    start, end = _range(scope, start, end)
    f = await _filter(scope, start, end, None, None)
    store = scope.conveyor.store
    return await store.read(statistics.workflow_range_stats, store.db.dialect, f)


@router.get(
    "/users",
    response_model=list[UserStats],
    summary="Per user: executions, tokens, API calls, p50/p95 (all time, or over a range)",
    description=(
        "Without `from` and `to`: all-time totals, with durations over each user's "
        f"{statistics.USER_WINDOW} most recent finished executions. With either: the "
        "executions created in the range, with success counts and rate."
    ),
)
async def user_stats(scope: Read, start: From = None, end: To = None) -> list[dict[str, Any]]:
    store = scope.conveyor.store
    if start is None and end is None:
        return await store.read(statistics.user_stats, scope.workspace_id)
    start, end = _range(scope, start, end)
    f = await _filter(scope, start, end, None, None)
    return await store.read(statistics.user_range_stats, store.db.dialect, f)
