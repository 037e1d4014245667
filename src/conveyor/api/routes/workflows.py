"""Workflows: create, list, get, update (new version), versions, status, statistics."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from conveyor.api import views
from conveyor.api.audit import note
from conveyor.api.auth import Scope, read_access, write_access
from conveyor.api.bodies import JsonRoute
from conveyor.api.problems import MAX_INT
from conveyor.api.routes.webhooks import hook_url
from conveyor.api.schemas import (
    DefinitionBody,
    Page,
    Version,
    VersionDiff,
    WorkflowDetail,
    WorkflowItem,
)
from conveyor.engine.diff import diff_definitions
from conveyor.errors import Conflict
from conveyor.store import statistics
from conveyor.store import workflows as store
from conveyor.store.workflows import VersionRef

router = APIRouter(prefix="/workspaces/{ws}/workflows", tags=["workflows"], route_class=JsonRoute)
Read = Annotated[Scope, Depends(read_access)]
Write = Annotated[Scope, Depends(write_access)]
Limit = Annotated[int, Query(ge=1, le=500)]
VersionNumber = Annotated[int, Path(ge=1, le=MAX_INT)]
WorkflowStatus = Literal["draft", "active", "paused", "archived"]
RECENT = timedelta(hours=24)
Offset = Annotated[
    int, Query(ge=0, le=MAX_INT, description="rows to skip (after the cursor, if one is given)")
]


async def _detail(scope: Scope, ref: str, created: bool | None = None) -> dict[str, Any]:
    workflow = await scope.conveyor.store.read(store.get_workflow, scope.workspace_id, ref)
    version = await scope.conveyor.store.find_version(scope.workspace_id, workflow["id"])
    return {**workflow, "definition": version.definition, "created": created}


def trigger_changes(request: Request, ref: VersionRef) -> list[dict[str, Any]]:
    """What a save did to its declared triggers, with each webhook's URL and any secret
    generated now (shown this once)."""
    out = []
    for change in ref.triggers:
        item = change.as_dict()
        token = item.pop("token", None)
        if token is not None:
            item["url"] = hook_url(request, token)
        out.append(item)
    return out


@router.get(
    "",
    response_model=Page[WorkflowItem],
    summary="List workflows by name, each with its last execution and success rate",
)
async def list_workflows(
    scope: Read,
    limit: Limit = 50,
    cursor: str | None = None,
    offset: Offset = 0,
    q: Annotated[
        str | None,
        Query(max_length=200, description="part of the name, in any case"),
    ] = None,
    status: Annotated[
        list[WorkflowStatus] | None, Query(description="only these statuses (repeatable)")
    ] = None,
) -> dict[str, Any]:
    """Page with ``cursor`` (recommended: stable while workflows are added) or ``offset``."""
    after = views.decode_name_cursor(cursor) if cursor else None
    since = scope.conveyor.store.clock.now() - RECENT
    rows = await scope.conveyor.store.read(
        store.list_page,
        scope.workspace_id,
        limit + 1,
        after,
        offset,
        since=since,
        search=q,
        statuses=tuple(status or ()),
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": rows,
        "has_more": more,
        "next_cursor": views.encode_name_cursor(rows[-1]["name"]) if more else None,
    }


def _applied(ref: VersionRef) -> dict[str, Any]:
    return {"name": ref.workflow_name, "version": ref.version, "created": ref.created}


@router.post(
    "",
    response_model=WorkflowDetail,
    status_code=201,
    summary="Create a workflow, or store a new version of the one with this name",
)
async def create_workflow(
    scope: Write, body: DefinitionBody, request: Request, response: Response
) -> dict[str, Any]:
    ref = await scope.conveyor.apply(body.definition)
    note(request, target_id=ref.workflow_id, details=_applied(ref))
    if not ref.created:
        response.status_code = 200
    detail = await _detail(scope, ref.workflow_id, ref.created)
    return {**detail, "triggers": trigger_changes(request, ref)}


@router.get(
    "/{workflow}", response_model=WorkflowDetail, summary="A workflow and its latest definition"
)
async def get_workflow(scope: Read, workflow: str) -> dict[str, Any]:
    return await _detail(scope, workflow)


@router.put(
    "/{workflow}",
    response_model=WorkflowDetail,
    summary="Update: store the definition as a new immutable version",
)
async def update_workflow(
    scope: Write, workflow: str, body: DefinitionBody, request: Request
) -> dict[str, Any]:
    current = await scope.conveyor.store.read(store.get_workflow, scope.workspace_id, workflow)
    if body.definition.get("name") != current["name"]:
        raise Conflict(f"the definition's name must stay '{current['name']}'")
    ref = await scope.conveyor.apply(body.definition)
    note(request, details=_applied(ref))
    detail = await _detail(scope, ref.workflow_id, ref.created)
    return {**detail, "triggers": trigger_changes(request, ref)}


@router.get("/{workflow}/versions", response_model=list[Version])
async def list_versions(scope: Read, workflow: str) -> list[dict[str, Any]]:
    return await scope.conveyor.store.read(store.list_versions, scope.workspace_id, workflow)


@router.get(
    "/{workflow}/versions/{version}",
    response_model=dict[str, Any],
    summary="One version's definition",
)
async def get_version(scope: Read, workflow: str, version: VersionNumber) -> dict[str, Any]:
    ref = await scope.conveyor.store.find_version(scope.workspace_id, workflow, version)
    return {"workflow_id": ref.workflow_id, "version": ref.version, "definition": ref.definition}


@router.get(
    "/{workflow}/versions/{a}/diff/{b}",
    response_model=VersionDiff,
    summary="What changed from version a to version b: a unified diff of their YAML, and "
    "the nodes and edges added, removed and changed",
)
async def diff_versions(
    scope: Read, workflow: str, a: VersionNumber, b: VersionNumber
) -> dict[str, Any]:
    old = await scope.conveyor.store.find_version(scope.workspace_id, workflow, a)
    new = await scope.conveyor.store.find_version(scope.workspace_id, workflow, b)
    name = old.workflow_name
    return {
        "workflow_id": old.workflow_id,
        "from_version": a,
        "to_version": b,
        **diff_definitions(old.definition, new.definition, f"{name} v{a}", f"{name} v{b}"),
    }


async def _status(scope: Scope, workflow: str, status: str) -> dict[str, Any]:
    await scope.conveyor.store.write(
        store.set_status, scope.workspace_id, workflow, status, scope.conveyor.store.clock.now()
    )
    return await _detail(scope, workflow)


@router.post("/{workflow}/activate", response_model=WorkflowDetail)
async def activate(scope: Write, workflow: str) -> dict[str, Any]:
    return await _status(scope, workflow, "active")


@router.post(
    "/{workflow}/pause",
    response_model=WorkflowDetail,
    summary="Pause: triggers stop firing; manual executions still run",
)
async def pause(scope: Write, workflow: str) -> dict[str, Any]:
    return await _status(scope, workflow, "paused")


@router.post(
    "/{workflow}/archive", response_model=WorkflowDetail, summary="Archive: no new executions"
)
async def archive(scope: Write, workflow: str) -> dict[str, Any]:
    return await _status(scope, workflow, "archived")


@router.get(
    "/{workflow}/stats",
    response_model=dict[str, Any],
    summary="Counts by status, success rate, durations, and per-node statistics",
)
async def workflow_stats(scope: Read, workflow: str) -> dict[str, Any]:
    row = await scope.conveyor.store.read(store.get_workflow, scope.workspace_id, workflow)
    stats = await scope.conveyor.store.read(statistics.workflow_stats, row["id"])
    stats["nodes"] = await scope.conveyor.store.read(statistics.node_stats, row["id"])
    return stats
