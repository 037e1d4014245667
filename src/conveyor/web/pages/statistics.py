"""The statistics page: per workflow and per user over a time range (executions, success
rate, p50/p95 duration, AI tokens, API calls), and charts of executions, failures and
duration percentiles over time. The range lives in the URL (``?range=24h`` or
``?range=custom&from=...&to=...``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from conveyor.errors import InputError
from conveyor.store import statistics
from conveyor.store.history import ExecutionFilter
from conveyor.web.render import render
from conveyor.web.session import InWorkspace, LiveAfter, Page

router = APIRouter()
PRESETS = {
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}
DEFAULT = "24h"
CUSTOM = "custom"


@dataclass(frozen=True)
class Chosen:
    """The range the page shows, and what the form should show again."""

    key: str
    start: datetime
    end: datetime
    typed_from: str = ""
    typed_to: str = ""
    error: str = ""


def parse_utc(text: str) -> datetime:
    """A ``datetime-local`` value (or ISO 8601) read as UTC unless it names its offset."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"'{text}' is not a date and time (YYYY-MM-DDTHH:MM)") from None
    try:
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except OverflowError:
        raise InputError(f"'{text}' is out of range once converted to UTC") from None


def choose(now: datetime, key: str | None, start: str | None, end: str | None) -> Chosen:
    """The preset, or the custom range typed (falling back to the default, with the error,
    when it is not a range)."""
    if key != CUSTOM:
        key = key if key in PRESETS else DEFAULT
        return Chosen(key, now - PRESETS[key][1], now)
    typed_from, typed_to = start or "", end or ""
    try:
        finish = parse_utc(typed_to) if typed_to else now
        begin = parse_utc(typed_from) if typed_from else finish - PRESETS[DEFAULT][1]
        statistics.time_range(begin, finish)
    except (InputError, OverflowError) as exc:
        reason = str(exc) if isinstance(exc, InputError) else "the range is out of bounds"
        fallback = choose(now, DEFAULT, None, None)
        return Chosen(CUSTOM, fallback.start, fallback.end, typed_from, typed_to, reason)
    return Chosen(CUSTOM, begin, finish, typed_from, typed_to)


def _local_input(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    counted = {k: sum(r[k] for r in rows) for k in ("executions", "succeeded", "failed")}
    finished = counted["succeeded"] + counted["failed"] + sum(r["cancelled"] for r in rows)
    return {**counted, "success_rate": counted["succeeded"] / finished if finished else None}


async def _data(page: Page, chosen: Chosen) -> dict[str, Any]:
    """The same store queries as ``GET .../stats/{timeseries,workflows,users}``."""
    store = page.scope.conveyor.store
    span = statistics.time_range(chosen.start, chosen.end)
    f = ExecutionFilter(
        workspace_id=page.scope.workspace_id,
        created_after=chosen.start,
        created_before=chosen.end,
    )
    dialect = store.db.dialect
    buckets = await store.read(statistics.timeseries, dialect, f, span)
    per_workflow = await store.read(statistics.workflow_range_stats, dialect, f)
    per_user = await store.read(statistics.user_range_stats, dialect, f)
    return {
        "unit": span.unit,
        "buckets": buckets,
        "workflows": per_workflow,
        "users": per_user,
        "totals": _totals(per_workflow),
        "chart": {
            "unit": span.unit,
            "buckets": [
                {k: b[k] for k in ("executions", "succeeded", "failed", "p50_ms", "p95_ms")}
                | {"start": b["start"].isoformat()}
                for b in buckets
            ],
        },
    }


@router.get("/w/{ws}/statistics")
async def statistics_page(
    page: InWorkspace,
    after: LiveAfter,
    range_: Annotated[str | None, Query(alias="range", max_length=20)] = None,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
) -> HTMLResponse:
    chosen = choose(page.scope.conveyor.store.clock.now(), range_, start, end)
    context = {
        "page": page,
        "nav": "statistics",
        "live_after": after,
        "title": "Statistics",
        "presets": [(key, label) for key, (label, _) in PRESETS.items()],
        "chosen": chosen,
        "range_label": PRESETS[chosen.key][0].lower() if chosen.key in PRESETS else "the range",
        "from_value": chosen.typed_from or _local_input(chosen.start),
        "to_value": chosen.typed_to or _local_input(chosen.end),
        **await _data(page, chosen),
    }
    return render(page.request, "statistics.html", context, 422 if chosen.error else 200)
