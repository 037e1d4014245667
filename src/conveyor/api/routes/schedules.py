"""Schedules: list and create per workflow; show (with the next five fire times), enable,
disable, delete; the occurrences recorded (started, skipped, missed, buffered, with their
reasons); backfill of a past range, with a dry run that only counts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api.auth import Scope, read_access, write_access
from conveyor.api.bodies import JsonRoute
from conveyor.api.schemas import UtcDatetime
from conveyor.engine.triggers import ScheduleSpec
from conveyor.triggers.schedules import BACKFILL_LIMIT, FIRES_LIMIT, Schedules

router = APIRouter(prefix="/workspaces/{ws}", tags=["schedules"], route_class=JsonRoute)
Read = Annotated[Scope, Depends(read_access)]
Write = Annotated[Scope, Depends(write_access)]
FireStatus = Literal["started", "skipped", "missed", "buffered"]


class Fire(BaseModel):
    """One occurrence: its nominal time (its identity) and what happened to it."""

    id: int
    nominal_at: datetime
    status: FireStatus
    reason: str | None = None
    execution_id: str | None = None
    created_at: datetime


class Schedule(BaseModel):
    id: str
    key: str = Field(description="the schedule's id within its workflow")
    workflow_id: str
    workflow_name: str | None = None
    source: Literal["definition", "api"] = Field(
        description="declared by the definition's triggers (kept in step with new versions) "
        "or created through the API/CLI"
    )
    enabled: bool
    spec: dict[str, Any]
    next_fire_at: datetime | None = Field(description="the next nominal time not handled yet")
    next_fire_times: list[datetime] = Field(description="the next five nominal times")
    last_fire_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class ScheduleDetail(Schedule):
    recent_fires: list[Fire]


class BackfillBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: UtcDatetime = Field(description="first instant of the range (included)")
    end: UtcDatetime = Field(description="end of the range (excluded; at most now)")
    dry_run: bool = Field(default=False, description="only count")


class BackfillResult(BaseModel):
    occurrences: int = Field(description=f"occurrences in the range (at most {BACKFILL_LIMIT})")
    started: int = Field(description="executions started now")
    already: int = Field(description="occurrences that had started before (left alone)")
    dry_run: bool
    execution_ids: list[str]


@router.get(
    "/workflows/{workflow}/schedules",
    response_model=list[Schedule],
    summary="A workflow's schedules",
)
async def list_schedules(scope: Read, workflow: str) -> list[dict[str, Any]]:
    return await Schedules(scope.conveyor).list_schedules(workflow)


@router.post(
    "/workflows/{workflow}/schedules",
    response_model=ScheduleDetail,
    status_code=201,
    summary="Create a schedule (new versions of the definition leave it alone)",
)
async def create_schedule(scope: Write, workflow: str, body: ScheduleSpec) -> dict[str, Any]:
    return await Schedules(scope.conveyor).create(workflow, body)


@router.get(
    "/schedules/{schedule_id}",
    response_model=ScheduleDetail,
    summary="A schedule with its next five fire times and its recent occurrences",
)
async def get_schedule(scope: Read, schedule_id: str) -> dict[str, Any]:
    return await Schedules(scope.conveyor).get(schedule_id)


@router.post(
    "/schedules/{schedule_id}/enable",
    response_model=ScheduleDetail,
    summary="Enable: it fires from now on (the time it was disabled is not caught up)",
)
async def enable_schedule(scope: Write, schedule_id: str) -> dict[str, Any]:
    return await Schedules(scope.conveyor).set_enabled(schedule_id, True)


@router.post("/schedules/{schedule_id}/disable", response_model=ScheduleDetail)
async def disable_schedule(scope: Write, schedule_id: str) -> dict[str, Any]:
    return await Schedules(scope.conveyor).set_enabled(schedule_id, False)


@router.delete(
    "/schedules/{schedule_id}",
    status_code=204,
    summary="Delete (one the definition declares comes back with its next version unless "
    "the definition drops it)",
)
async def delete_schedule(scope: Write, schedule_id: str) -> None:
    await Schedules(scope.conveyor).delete(schedule_id)


@router.get(
    "/schedules/{schedule_id}/fires",
    response_model=list[Fire],
    summary="Occurrences, newest first, with reasons and the executions they started",
)
async def list_fires(
    scope: Read,
    schedule_id: str,
    status: FireStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=FIRES_LIMIT)] = 50,
) -> list[dict[str, Any]]:
    return await Schedules(scope.conveyor).fires(schedule_id, status=status, limit=limit)


@router.post(
    "/schedules/{schedule_id}/backfill",
    response_model=BackfillResult,
    summary=f"Start an execution for each occurrence in [start, end) (at most "
    f"{BACKFILL_LIMIT}); an occurrence that already started is never started again",
)
async def backfill(scope: Write, schedule_id: str, body: BackfillBody) -> dict[str, Any]:
    done = await Schedules(scope.conveyor).backfill(
        schedule_id, body.start, body.end, dry_run=body.dry_run
    )
    return {
        "occurrences": done.occurrences,
        "started": done.started,
        "already": done.already,
        "dry_run": done.dry_run,
        "execution_ids": list(done.execution_ids),
    }
