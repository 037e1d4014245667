"""The workflow page (being built: issue 10)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from conveyor.web.render import render
from conveyor.web.session import InWorkspace

router = APIRouter()


@router.get("/w/{ws}/workflows/{name}")
async def workflow_page(page: InWorkspace, name: str) -> HTMLResponse:
    return render(
        page.request, "pending.html", {"page": page, "title": "Workflow", "nav": "workflow"}
    )
