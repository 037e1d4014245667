"""The execution page (being built: issue 10)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from conveyor.web.render import render
from conveyor.web.session import InWorkspace

router = APIRouter()


@router.get("/w/{ws}/executions/{execution_id}")
async def execution_page(page: InWorkspace, execution_id: str) -> HTMLResponse:
    return render(
        page.request, "pending.html", {"page": page, "title": "Execution", "nav": "execution"}
    )
