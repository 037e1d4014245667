"""The executions page (the monitor): live counts, every execution across workflows with
filters kept in the URL, cursor pages, and bulk cancel / retry / replay.

The table is read with the same filter, store query and JSON view as
``GET /api/v1/workspaces/{ws}/executions``; the table rows are one partial that also
renders alone (``/w/{ws}/executions/rows``) for live updates and refreshes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, cast, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from conveyor.api import views
from conveyor.api.routes.executions import FilterQuery
from conveyor.api.schemas import StatusName
from conveyor.errors import InputError, NotFound
from conveyor.store import accounts, statistics, trigger_history
from conveyor.store import workflows as workflow_store
from conveyor.store.history import ExecutionFilter, list_executions
from conveyor.web.render import render
from conveyor.web.session import InWorkspace, LiveAfter, Page

router = APIRouter()
PAGE_SIZE = 50
MAX_PAGE = 500  # as the API's limit
LIVE_ROWS = 50  # the most rows one live refresh asks for by id
STATUSES: tuple[str, ...] = get_args(StatusName)
TRIGGERS = ("manual", "api", "schedule", "webhook", "retry", "replay", "workflow")
Text = Annotated[str | None, Query(max_length=200)]
Statuses = Annotated[list[str] | None, Query(max_length=len(STATUSES))]


def _moment(value: str | None, name: str) -> datetime | None:
    """A ``datetime-local`` value (no zone: UTC, as the form says) or an ISO timestamp."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"'{name}' is not a date and time: '{value}'") from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Filters:
    """The monitor's filters as the URL carries them (empty fields mean "any")."""

    status: list[str] = field(default_factory=list)
    workflow: str = ""
    user: str = ""
    trigger: str = ""  # the trigger type
    trigger_id: str = ""  # one schedule or webhook
    start: str = ""
    end: str = ""
    q: str = ""
    limit: int | None = None  # rows per page (PAGE_SIZE if not given); kept in the URL

    def __post_init__(self) -> None:
        unknown = [s for s in self.status if s not in STATUSES]
        if unknown:
            raise InputError(f"unknown status '{unknown[0]}'; one of {', '.join(STATUSES)}")
        self.status = [s for s in STATUSES if s in self.status]

    @property
    def active(self) -> bool:
        fields = (
            self.workflow,
            self.user,
            self.trigger,
            self.trigger_id,
            self.start,
            self.end,
            self.q,
        )
        return bool(self.status) or any(fields)

    def query(self) -> FilterQuery:
        """The API's filter query, so the page selects exactly what the API would."""
        return FilterQuery(
            status=cast("list[StatusName] | None", self.status or None),  # checked above
            trigger_type=self.trigger or None,
            trigger_id=self.trigger_id or None,
            user=self.user or None,
            created_after=_moment(self.start, "from"),
            created_before=_moment(self.end, "to"),
            q=self.q or None,
        )

    def url_query(self, only_status: str = "", **extra: str) -> str:
        """The page's own query string (what a bookmark keeps), or that of the same view
        narrowed to ``only_status``."""
        chosen = [only_status] if only_status else self.status
        pairs: list[tuple[str, str]] = [("status", s) for s in chosen]
        for name, value in (
            ("workflow", self.workflow),
            ("user", self.user),
            ("trigger", self.trigger),
            ("trigger_id", self.trigger_id),
            ("from", self.start),
            ("to", self.end),
            ("q", self.q),
            ("limit", str(self.limit or "")),
            *extra.items(),
        ):
            if value:
                pairs.append((name, value))
        return urlencode(pairs)

    def api_selection(self) -> dict[str, Any]:
        """The ``filter`` of a bulk request (the API's ExecutionQuery)."""
        q = self.query()
        selection = {
            "status": self.status or None,
            "workflow": self.workflow or None,
            "user": q.user,
            "trigger_type": q.trigger_type,
            "trigger_id": q.trigger_id,
            "created_after": q.created_after.isoformat() if q.created_after else None,
            "created_before": q.created_before.isoformat() if q.created_before else None,
            "q": q.q,
        }
        return {k: v for k, v in selection.items() if v}

    def api_query(self) -> str:
        """The same selection as the list / counts endpoints' query string."""
        pairs: list[tuple[str, str]] = []
        for name, value in self.api_selection().items():
            values = value if isinstance(value, list) else [value]
            pairs.extend((name, str(v)) for v in values)
        return urlencode(pairs)


def _filters(
    status: Statuses = None,
    workflow: Text = None,
    user: Text = None,
    trigger: Text = None,
    trigger_id: Annotated[str | None, Query(max_length=32)] = None,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    q: Text = None,
    limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE)] = None,
) -> Filters:
    return Filters(
        status=status or [],
        workflow=(workflow or "").strip(),
        user=(user or "").strip(),
        trigger=(trigger or "").strip(),
        trigger_id=(trigger_id or "").strip(),
        start=start or "",
        end=end or "",
        q=(q or "").strip(),
        limit=limit,
    )


Filtered = Annotated[Filters, Depends(_filters)]


async def _store_filter(page: Page, filters: Filters) -> ExecutionFilter:
    workflow_id = None
    if filters.workflow:
        row = await page.scope.conveyor.store.read(
            workflow_store.get_workflow, page.scope.workspace_id, filters.workflow
        )
        workflow_id = str(row["id"])
    return filters.query().filter(page.scope, workflow_id)


async def _with_users(page: Page, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each execution's starter as an email (the API gives the user id)."""
    ids = {i["created_by"] for i in items if i["created_by"]}
    people = await page.scope.conveyor.store.read(accounts.execution_users, ids)
    for item in items:
        person = people.get(item["created_by"]) if item["created_by"] else None
        item["user_email"] = person.email if person else ""
    return items


@dataclass
class Listing:
    """One page of the table, its stats block and where the next page starts."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    stats: dict[str, Any] | None


async def _listing(page: Page, filters: Filters, cursor: str | None, stats: bool) -> Listing:
    store = page.scope.conveyor.store
    f = await _store_filter(page, filters)
    size = filters.limit or PAGE_SIZE
    f.limit = size + 1
    f.cursor = views.decode_cursor(cursor) if cursor else None
    rows = await store.read(list_executions, f)
    more = len(rows) > size
    rows = rows[:size]
    now = store.clock.now()
    items = await _with_users(page, [views.execution(r, now) for r in rows])
    after = views.encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    block = None
    if stats:
        f.cursor = None
        block = await store.read(statistics.list_stats, f)
    return Listing(items, after, block)


async def _workflow_names(page: Page) -> list[str]:
    store = page.scope.conveyor.store
    rows = await store.read(
        workflow_store.list_page, page.scope.workspace_id, 500, None, since=store.clock.now()
    )
    return [str(r["name"]) for r in rows]


async def _newest(page: Page, filters: Filters) -> datetime | None:
    f = await _store_filter(page, filters)
    f.limit = 1
    rows = await page.scope.conveyor.store.read(list_executions, f)
    return rows[0]["created_at"] if rows else None


@router.get("/w/{ws}/executions")
async def executions_page(
    page: InWorkspace, after: LiveAfter, filters: Filtered, cursor: Text = None
) -> HTMLResponse:
    problem = None
    try:
        listing = await _listing(page, filters, cursor, stats=True)
    except NotFound as exc:  # a workflow name that is not (or no longer) there
        listing, problem = Listing([], None, {"total": 0, "by_status": {}}), str(exc)
    newest = listing.items[0]["created_at"] if listing.items and not cursor else None
    if cursor and not problem:
        newest = await _newest(page, filters)
    context = {
        "page": page,
        "nav": "executions",
        "live_after": after,
        "title": "Executions",
        "filters": filters,
        "listing": listing,
        "cursor": cursor,
        "problem": problem,
        "statuses": STATUSES,
        "triggers": TRIGGERS,
        "workflows": await _workflow_names(page),
        "trigger_choices": await page.scope.conveyor.store.read(
            trigger_history.workspace_triggers, page.scope.workspace_id
        ),
        "monitor": {
            "rows_url": f"/w/{page.scope.workspace}/executions/rows",
            "page_query": filters.url_query(),
            "api_query": filters.api_query(),
            "selection": filters.api_selection(),
            "cursor": cursor,
            "first_page": cursor is None,
            # What "new" means on an older page: created after the filter's newest now.
            "newest": newest.isoformat() if newest else None,
            "filtered": filters.active,
        },
    }
    return render(page.request, "executions.html", context)


@router.get("/w/{ws}/executions/rows")
async def execution_rows(
    page: InWorkspace,
    filters: Filtered,
    cursor: Text = None,
    id: Annotated[list[str] | None, Query(max_length=LIVE_ROWS)] = None,
) -> HTMLResponse:
    """The table's rows alone: the executions named by ``id`` (a live refresh of those
    rows), or the first page (or the page at ``cursor``) of the filter."""
    if id:
        items = await _rows_by_id(page, id)
    else:
        try:
            items = (await _listing(page, filters, cursor, stats=False)).items
        except NotFound:
            items = []
    return render(page.request, "partials/executions-rows.html", {"page": page, "items": items})


async def _rows_by_id(page: Page, ids: list[str]) -> list[dict[str, Any]]:
    store = page.scope.conveyor.store
    items = []
    for execution_id in dict.fromkeys(ids):
        try:
            # The steps' payloads are not needed for a row: keep them in the database.
            row = await store.get_execution(
                page.scope.workspace_id, execution_id, max_payload_bytes=0
            )
        except NotFound:
            continue
        items.append(views.execution(row, store.clock.now()))
    return await _with_users(page, items)
