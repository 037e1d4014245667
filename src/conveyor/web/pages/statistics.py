"""The statistics page (being built: issue 10)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from conveyor.web.render import render
from conveyor.web.session import InWorkspace

router = APIRouter()


@router.get("/w/{ws}/statistics")
async def statistics_page(page: InWorkspace) -> HTMLResponse:
    return render(
        page.request, "pending.html", {"page": page, "title": "Statistics", "nav": "statistics"}
    )
