"""The audit log page (Settings area, admins and owners): who changed what, when and from
where, newest first, filtered by action and actor; the rows ``GET .../audit`` answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from conveyor.api.routes.audit import decode_cursor, page
from conveyor.store.accounts import Role
from conveyor.store.audit import AuditFilter
from conveyor.web.render import render
from conveyor.web.session import InWorkspace, require

router = APIRouter()
PAGE_SIZE = 50
Filter = Annotated[str, Query(max_length=320)]


@router.get("/w/{ws}/audit")
async def audit_page(
    view: InWorkspace, action: Filter = "", actor: Filter = "", cursor: Filter = ""
) -> HTMLResponse:
    require(view, Role.ADMIN)
    found = await page(
        view.scope,
        AuditFilter(
            action=action.strip() or None,
            actor=actor.strip() or None,
            before_id=decode_cursor(cursor or None),
            limit=PAGE_SIZE,
        ),
    )
    context = {
        "page": view,
        "nav": "settings",
        "title": "Audit log",
        "entries": found["items"],
        "next_cursor": found["next_cursor"],
        "action": action,
        "actor": actor,
        "paged": bool(cursor),
    }
    return render(view.request, "audit.html", context)
