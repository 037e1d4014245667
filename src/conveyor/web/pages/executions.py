"""The executions page (being built: issue 10)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from conveyor.web.render import render
from conveyor.web.session import InWorkspace

router = APIRouter()


@router.get("/w/{ws}/executions")
async def executions_page(page: InWorkspace) -> HTMLResponse:
    return render(
        page.request, "pending.html", {"page": page, "title": "Executions", "nav": "executions"}
    )
