"""The workflows page: every workflow with its status, version and recent outcome; search by
name; create one from YAML; activate, pause, archive."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from conveyor.engine.definition import load_definition_text
from conveyor.errors import DefinitionError, InputError, PayloadTooLarge
from conveyor.store import workflows as store
from conveyor.store.accounts import Role
from conveyor.web.render import render
from conveyor.web.session import CSRF_FIELD, InWorkspace, Page, check_csrf, require

router = APIRouter()
PAGE_SIZE = 200
RECENT = timedelta(hours=24)  # "executions in the last 24 h", as the API counts them
STATUS_ACTIONS = {"activate": "active", "pause": "paused", "archive": "archived"}
CsrfField = Annotated[str, Form(alias=CSRF_FIELD, max_length=200)]


async def _rows(page: Page, q: str | None) -> list[dict[str, Any]]:
    store_ = page.scope.conveyor.store
    since = store_.clock.now() - RECENT
    rows = await store_.read(
        store.list_page, page.scope.workspace_id, PAGE_SIZE, None, since=since, search=q
    )
    for row in rows:
        finished = row["executions_finished"]
        row["success_rate"] = row["executions_succeeded"] / finished if finished else None
    return rows


def _view(page: Page, rows: list[dict[str, Any]], q: str | None, **extra: Any) -> HTMLResponse:
    context = {"page": page, "nav": "workflows", "title": "Workflows", "rows": rows, "q": q or ""}
    return render(page.request, "workflows.html", {**context, **extra}, extra.pop("status", 200))


@router.get("/w/{ws}/workflows")
async def workflows_page(
    page: InWorkspace, q: Annotated[str | None, Query(max_length=200)] = None
) -> HTMLResponse:
    return _view(page, await _rows(page, q), q)


@router.post("/w/{ws}/workflows")
async def create_workflow(
    page: InWorkspace,
    csrf: CsrfField = "",
    yaml: Annotated[str, Form(max_length=2_000_000)] = "",
) -> Response:
    """Create a workflow (or a new version of the one with its name) from YAML text."""
    check_csrf(page.request, csrf)
    require(page, Role.MEMBER)
    try:
        data = load_definition_text(yaml, "the YAML")
        ref = await page.scope.conveyor.apply(data)
    except (DefinitionError, InputError, PayloadTooLarge) as exc:
        problems = [p.as_dict() for p in exc.problems] if isinstance(exc, DefinitionError) else []
        return _view(
            page,
            await _rows(page, None),
            None,
            yaml=yaml,
            create_error=str(exc),
            problems=problems,
            status=422,
        )
    return RedirectResponse(f"/w/{page.scope.workspace}/workflows/{ref.workflow_name}", 303)


@router.post("/w/{ws}/workflows/{name}/{action}")
async def change_status(
    page: InWorkspace, name: str, action: str, csrf: CsrfField = ""
) -> Response:
    """Activate, pause or archive, then back to where the form was."""
    check_csrf(page.request, csrf)
    require(page, Role.MEMBER)
    if action not in STATUS_ACTIONS:
        raise InputError(f"unknown action '{action}'")
    store_ = page.scope.conveyor.store
    await store_.write(
        store.set_status, page.scope.workspace_id, name, STATUS_ACTIONS[action], store_.clock.now()
    )
    back = page.request.headers.get("referer") or f"/w/{page.scope.workspace}/workflows"
    return RedirectResponse(back, 303)
