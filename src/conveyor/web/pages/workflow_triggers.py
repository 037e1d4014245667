"""The workflow page's Triggers tab: its schedules (timing in words, next fire time, recent
occurrences with the reasons of skipped and missed ones) and webhooks (URL, auth mode,
recent deliveries), read from the same store rows as the triggers API.

The actions (enable / disable, backfill, the next five fire times) are the schedules and
webhooks API's own endpoints, called from ``workflow-triggers.js``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from conveyor.api.routes.webhooks import hook_url
from conveyor.store import trigger_history, triggers
from conveyor.store import workflows as workflow_store
from conveyor.web.render import render
from conveyor.web.schedule_words import schedule_words, wall_clock
from conveyor.web.session import InWorkspace, Page
from conveyor.web.webhook_words import webhook_view

router = APIRouter()


def _schedule(row: dict[str, Any], fires: list[dict[str, Any]]) -> dict[str, Any]:
    spec = row["spec"]
    zone = spec.get("timezone") or "UTC"
    zoned = bool(spec.get("cron")) and zone != "UTC"
    next_fire = row["next_fire_at"] is not None
    return {
        "id": row["id"],
        "key": row["key"],
        "source": row["source"],
        "enabled": row["enabled"],
        "timing": schedule_words(spec),
        "cron": spec.get("cron"),
        "every": spec.get("every"),
        "timezone": spec.get("timezone", "UTC"),
        "overlap": spec.get("overlap", "skip"),
        "catchup": spec.get("catchup", "skip"),
        "next_fire_at": row["next_fire_at"],
        # Only where it differs from what times.js shows: a cron schedule in another zone.
        "wall_zone": zone if zoned else None,
        "next_wall": wall_clock(row["next_fire_at"], zone) if next_fire and zoned else None,
        "last_fire_at": row["last_fire_at"],
        "fires": fires,
    }


def _webhook(page: Page, row: dict[str, Any], deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    # The URL is a capability (with auth "none", all it takes to start executions): only
    # roles that may start executions see it.
    url = hook_url(page.request, row["token"]) if page.can_write else None
    return {
        "id": row["id"],
        "key": row["key"],
        "source": row["source"],
        "enabled": row["enabled"],
        "url": url,
        "last_delivery_at": row["last_delivery_at"],
        "deliveries": deliveries,
        **webhook_view(row["spec"], url or ""),
    }


async def triggers_tab(page: Page, workflow_id: str) -> dict[str, Any]:
    """The tab's schedules and webhooks, each with its recent history."""
    store = page.scope.conveyor.store
    ws = page.scope.workspace_id
    schedules = await store.read(triggers.list_for_workflow, "schedule", ws, workflow_id)
    webhooks = await store.read(triggers.list_for_workflow, "webhook", ws, workflow_id)
    fires = await store.read(trigger_history.recent_fires, ws, [s["id"] for s in schedules])
    # The same read as GET .../webhooks/{id}/deliveries.
    deliveries = {
        w["id"]: await store.read(triggers.list_deliveries, ws, w["id"], trigger_history.RECENT)
        for w in webhooks
    }
    return {
        "schedules": [_schedule(s, fires[s["id"]]) for s in schedules],
        "webhooks": [_webhook(page, w, deliveries[w["id"]]) for w in webhooks],
    }


@router.get("/w/{ws}/workflows/{name}/triggers")
async def triggers_partial(page: InWorkspace, name: str) -> HTMLResponse:
    """The tab alone, read again after an action or when a trigger started an execution."""
    store = page.scope.conveyor.store
    workflow = await store.read(workflow_store.get_workflow, page.scope.workspace_id, name)
    context = {
        "page": page,
        "workflow": workflow,
        "triggers": await triggers_tab(page, workflow["id"]),
    }
    return render(page.request, "partials/workflow-triggers.html", context)
