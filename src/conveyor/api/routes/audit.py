"""The audit log of a workspace, for its admins: newest first, filtered and paged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from conveyor.api.auth import Scope, admin_access
from conveyor.api.schemas import Page, UtcDatetime
from conveyor.errors import InputError
from conveyor.store import audit

router = APIRouter(prefix="/workspaces/{ws}", tags=["audit"])
Admin = Annotated[Scope, Depends(admin_access)]
PAGE_LIMIT = 200


class AuditActor(BaseModel):
    display: str = Field(description="the user's email, or cli:<OS user> for the CLI")
    user_id: str | None
    api_key_id: str | None = Field(description="set when the user acted with an API key")


class AuditTarget(BaseModel):
    type: str | None
    id: str | None


class AuditSource(BaseModel):
    channel: str = Field(description="api, dashboard or cli")
    ip: str | None = Field(description="the client's address as the server saw it")
    user_agent: str | None


class AuditEntry(BaseModel):
    id: int
    workspace_id: str | None = Field(description="null: a sign-in (belongs to no workspace)")
    at: datetime
    actor: AuditActor
    action: str = Field(description="a dotted verb: workflow.apply, execution.cancel, ...")
    target: AuditTarget
    details: dict[str, Any] = Field(description="small, and never a secret value")
    source: AuditSource


class AuditPage(Page[AuditEntry]):
    pass


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit():
        raise InputError(f"cursor '{cursor}' is not one this API gave out")
    return int(cursor)


@dataclass
class AuditQuery:
    action: Annotated[
        str | None, Query(max_length=64, description="exact, or a prefix: workflow.*")
    ] = None
    actor: Annotated[
        str | None, Query(max_length=320, description="a user id, API key id or email")
    ] = None
    since: Annotated[UtcDatetime | None, Query(description="at or after")] = None
    until: Annotated[UtcDatetime | None, Query(description="before")] = None
    cursor: Annotated[str | None, Query(max_length=20)] = None
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 50

    def filter(self) -> audit.AuditFilter:
        return audit.AuditFilter(
            action=self.action,
            actor=self.actor,
            since=self.since,
            until=self.until,
            before_id=decode_cursor(self.cursor),
            limit=self.limit,
        )


async def page(scope: Scope, f: audit.AuditFilter) -> dict[str, Any]:
    """One page of entries; the dashboard's page shows the same."""
    rows = await scope.conveyor.store.read(audit.list_entries, scope.workspace_id, f)
    more = len(rows) > f.limit
    rows = rows[: f.limit]
    return {
        "items": rows,
        "has_more": more,
        "next_cursor": str(rows[-1]["id"]) if more else None,
    }


@router.get(
    "/audit",
    response_model=AuditPage,
    summary="Who changed what, when and from where (admins): newest first",
)
async def list_audit(scope: Admin, query: Annotated[AuditQuery, Depends()]) -> dict[str, Any]:
    return await page(scope, query.filter())
