"""The workflow editor: one definition as YAML text and as a canvas, kept in sync in the
browser; validation and saving go through the REST API (validate, create, update), and so
does a draft written by the configured LLM from a description (generate), never saved
until the person saves it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from conveyor.engine.definition import WorkflowDefinition
from conveyor.nodes.catalog import catalog
from conveyor.store import workflows as store
from conveyor.store.accounts import Role
from conveyor.web.csp import new_nonce, with_style_nonce
from conveyor.web.render import render
from conveyor.web.session import InWorkspace, require

router = APIRouter()
NEW = "new"
STARTER: dict[str, Any] = {
    "name": "my-workflow",
    "nodes": [
        {"id": "start", "type": "transform", "config": {"output": {"hello": "{{ input.name }}"}}}
    ],
}


def compact(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored (normalized) definition as a person writes it: without the defaults."""
    definition = WorkflowDefinition.model_validate(stored)
    return definition.model_dump(mode="json", by_alias=True, exclude_defaults=True)


@router.get("/w/{ws}/workflows/{name}/edit")
async def editor_page(page: InWorkspace, name: str) -> HTMLResponse:
    """``new`` opens an empty editor; any other name, that workflow's latest version."""
    require(page, Role.MEMBER)
    scope = page.scope
    workflow: dict[str, Any] | None = None
    document = STARTER
    if name != NEW:
        workflow = await scope.conveyor.store.read(store.get_workflow, scope.workspace_id, name)
        version = await scope.conveyor.store.find_version(scope.workspace_id, workflow["id"])
        document = compact(version.definition)
    nonce = new_nonce()
    # The LLM that drafts workflows (None: the "Describe it" box says how to set one).
    drafting = page.request.app.state.drafting is not None
    title = f"Edit {workflow['name']}" if workflow else "New workflow"
    context = {
        "page": page,
        "nav": "editor",
        "title": title,
        "workflow": workflow,
        "nonce": nonce,
        "drafting": drafting,
        "editor": {
            "workflow": workflow["name"] if workflow else None,
            "version": workflow.get("latest_version") if workflow else None,
            "document": document,
            "node_types": catalog(scope.conveyor.registry),
            "drafting": drafting,
        },
    }
    response = render(page.request, "editor.html", context)
    # CodeMirror injects its styles as <style> elements: allowed by this response's nonce.
    response.headers["Content-Security-Policy"] = with_style_nonce(nonce)
    return response
