"""The execution page: one execution's header, graph, timeline of step attempts, steps with
their input, output, error and logs, and the run controls; the page's scripts keep it live."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from conveyor.api import views
from conveyor.api.routes.executions import SUMMARY_BYTES
from conveyor.engine.state import TERMINAL
from conveyor.store import accounts, history
from conveyor.web.render import render
from conveyor.web.session import InWorkspace, Page

router = APIRouter()
# The timeline's waits come from the execution's step events; an execution with more events
# than this shows its first ones (steps themselves are always complete).
EVENTS_SHOWN = 2000
STEP_EVENTS = frozenset(
    f"step.{kind}"
    for kind in (
        "started",
        "waiting",
        "succeeded",
        "failed",
        "retrying",
        "cancelled",
        "skipped",
        "interrupted",
    )
)


def _calls_children(definition: dict[str, Any]) -> bool:
    """Only ``workflow.call`` nodes start child executions: without one, none to look up."""
    return any(n.get("type") == "workflow.call" for n in definition.get("nodes") or [])


async def _user(page: Page, user_id: str | None) -> dict[str, str] | None:
    if user_id is None:
        return None
    found = await page.scope.conveyor.store.read(accounts.execution_users, {user_id})
    user = found[user_id]
    return {"id": user.id, "email": user.email, "name": user.name or ""}


def _step_events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"seq": r["seq"], "type": r["type"], "created_at": r["created_at"], **r["data"]}
        for r in rows
        if r["type"] in STEP_EVENTS
    ]


@router.get("/w/{ws}/executions/{execution_id}")
async def execution_page(page: InWorkspace, execution_id: str) -> HTMLResponse:
    store = page.scope.conveyor.store
    workspace_id = page.scope.workspace_id
    row = await store.get_execution(workspace_id, execution_id, max_payload_bytes=SUMMARY_BYTES)
    detail = views.execution_detail(row, store.clock.now())
    ref = await store.find_version(workspace_id, row["workflow_id"], row["version"])
    children = []
    if _calls_children(ref.definition):
        children = await store.read(
            history.child_executions, workspace_id, row["id"], row["created_at"]
        )
    events = await store.read(history.events_after, row["id"], 0, EVENTS_SHOWN)
    state = {
        "execution": detail,
        "definition": ref.definition,
        "events": _step_events(events),
        "seq": row["event_seq"],
        "terminal": row["status"] in {s.value for s in TERMINAL},
    }
    context = {
        "page": page,
        "nav": "execution",
        "title": f"Execution {row['id'][:8]}",
        "execution": detail,
        "paused": bool(row["paused"]),
        "parent_node_id": row["parent_node_id"],
        "user": await _user(page, row["created_by"]),
        "children": children,
        "state": state,
    }
    return render(page.request, "execution.html", context)
