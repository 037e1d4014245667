"""The workflow page: one workflow's graph, the Run button with its input form and live
node statuses, the results of the execution it started, recent executions, statistics,
versions and settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from conveyor.api import views
from conveyor.engine.limits import json_size
from conveyor.errors import DefinitionError, PayloadTooLarge
from conveyor.store import statistics
from conveyor.store import workflows as store
from conveyor.store.history import ExecutionFilter, list_executions
from conveyor.web.render import render
from conveyor.web.session import InWorkspace, Page

router = APIRouter()
RECENT = 20
PREFILL_BYTES = 64 * 1024


def run_blocked(page: Page, workflow: dict[str, Any], definition: dict[str, Any]) -> str | None:
    """Why the Run button is disabled, or None. Stored definitions validated when they were
    saved, but the node types registered now may differ (a plugin no longer loaded)."""
    if not definition.get("nodes"):
        return "The workflow has no nodes yet."
    if workflow["status"] == "archived":
        return "The workflow is archived; activate it to run it."
    try:
        page.scope.conveyor.validate(definition)
    except DefinitionError as exc:
        return f"The definition does not validate: {exc}"
    except PayloadTooLarge as exc:
        return str(exc)
    return None


async def _recent(page: Page, workflow_id: str) -> list[dict[str, Any]]:
    """The same rows as ``GET .../workflows/{name}/executions``."""
    store_ = page.scope.conveyor.store
    scoped = ExecutionFilter(page.scope.workspace_id, workflow_id=workflow_id, limit=RECENT)
    rows = await store_.read(list_executions, scoped)
    now = store_.clock.now()
    return [views.execution(r, now) for r in rows]


def _last_input(recent: list[dict[str, Any]]) -> dict[str, Any]:
    """The Run form starts from the last execution's input; a large one is not sent with
    the page but read from the API when the form opens."""
    last = recent[0]["input"] if recent else None
    if json_size(last) > PREFILL_BYTES:
        return {"last_input": None, "last_input_elsewhere": True}
    return {"last_input": last, "last_input_elsewhere": False}


@router.get("/w/{ws}/workflows/{name}")
async def workflow_page(page: InWorkspace, name: str) -> HTMLResponse:
    store_ = page.scope.conveyor.store
    workflow = await store_.read(store.get_workflow, page.scope.workspace_id, name)
    version = await store_.find_version(page.scope.workspace_id, workflow["id"])
    definition = version.definition
    recent = await _recent(page, workflow["id"])
    stats = await store_.read(statistics.workflow_stats, workflow["id"])
    versions = await store_.read(store.list_versions, page.scope.workspace_id, workflow["id"])
    context = {
        "page": page,
        "nav": "workflow",
        "title": workflow["name"],
        "workflow": workflow,
        "version": version.version,
        "definition": definition,
        "settings": definition.get("settings", {}),
        "recent": recent,
        "stats": stats,
        "versions": versions,
        "blocked": run_blocked(page, workflow, definition),
        "run": {
            "workflow": workflow["name"],
            "workflow_id": workflow["id"],
            **_last_input(recent),
        },
    }
    return render(page.request, "workflow.html", context)
