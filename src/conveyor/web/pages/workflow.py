"""The workflow page: one workflow's graph, the Run button with its input form and live
node statuses, the results of the execution it started, recent executions, statistics,
versions (with a diff between any two), triggers and settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from conveyor.api import views
from conveyor.engine.diff import diff_definitions
from conveyor.engine.limits import json_size
from conveyor.errors import DefinitionError, PayloadTooLarge
from conveyor.store import statistics
from conveyor.store import workflows as store
from conveyor.store.history import ExecutionFilter, list_executions
from conveyor.web.pages.workflow_triggers import triggers_tab
from conveyor.web.render import render
from conveyor.web.session import InWorkspace, LiveAfter, Page

router = APIRouter()
RECENT = 20
PREFILL_BYTES = 64 * 1024
LIVE = frozenset({"queued", "running", "waiting"})


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


def diff_lines(unified: str) -> list[tuple[str, str]]:
    """Each line of a unified diff with its kind (file, hunk, added, removed, same), for a
    ``<pre>`` that marks added and removed lines for the eye and for screen readers."""
    lines: list[tuple[str, str]] = []
    in_hunk = False  # a removed line "--- x" inside a hunk is not a file header
    for line in unified.splitlines():
        if line.startswith("@@"):
            kind, in_hunk = "hunk", True
        elif not in_hunk and line.startswith(("+++", "---")):
            kind = "file"
        else:
            kind = {"+": "added", "-": "removed"}.get(line[:1], "same")
        lines.append((kind, line))
    return lines


def diff_pair(versions: list[int], wanted: tuple[int | None, int | None]) -> tuple[int, int] | None:
    """The two versions to compare: those asked for when both exist, else the previous and
    the latest; None with fewer than two versions. ``versions`` is newest first."""
    if len(versions) < 2:
        return None
    old, new = wanted
    if old in versions and new in versions:
        return old, new
    return versions[1], versions[0]


async def _diff(
    page: Page, workflow: dict[str, Any], pair: tuple[int, int] | None
) -> dict[str, Any] | None:
    """The same answer as ``GET .../versions/{a}/diff/{b}``, with its lines classified."""
    if pair is None:
        return None
    store_ = page.scope.conveyor.store
    old = await store_.find_version(page.scope.workspace_id, workflow["id"], pair[0])
    new = await store_.find_version(page.scope.workspace_id, workflow["id"], pair[1])
    name = workflow["name"]
    found = diff_definitions(
        old.definition, new.definition, f"{name} v{pair[0]}", f"{name} v{pair[1]}"
    )
    return {
        "from_version": pair[0],
        "to_version": pair[1],
        **found,
        "lines": diff_lines(found["unified"]),
    }


def _following(recent: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest execution (the row ``GET .../workflows/{name}/execute`` answers) when it
    has not ended: the page opens following it."""
    if recent and recent[0]["status"] in LIVE:
        return {"id": recent[0]["id"], "status": recent[0]["status"]}
    return None


@router.get("/w/{ws}/workflows/{name}")
async def workflow_page(
    page: InWorkspace,
    after: LiveAfter,
    name: str,
    diff_from: Annotated[int | None, Query(alias="from", ge=1)] = None,
    diff_to: Annotated[int | None, Query(alias="to", ge=1)] = None,
) -> HTMLResponse:
    store_ = page.scope.conveyor.store
    workflow = await store_.read(store.get_workflow, page.scope.workspace_id, name)
    version = await store_.find_version(page.scope.workspace_id, workflow["id"])
    definition = version.definition
    recent = await _recent(page, workflow["id"])
    stats = await store_.read(statistics.workflow_stats, workflow["id"])
    versions = await store_.read(store.list_versions, page.scope.workspace_id, workflow["id"])
    pair = diff_pair([v["version"] for v in versions], (diff_from, diff_to))
    context = {
        "page": page,
        "nav": "workflow",
        "live_after": after,
        "title": workflow["name"],
        "workflow": workflow,
        "version": version.version,
        "definition": definition,
        "settings": definition.get("settings", {}),
        "recent": recent,
        "stats": stats,
        "versions": versions,
        "diff": await _diff(page, workflow, pair),
        "triggers": await triggers_tab(page, workflow["id"]),
        "blocked": run_blocked(page, workflow, definition),
        "run": {
            "workflow": workflow["name"],
            "workflow_id": workflow["id"],
            "following": _following(recent),
            **_last_input(recent),
        },
    }
    return render(page.request, "workflow.html", context)
