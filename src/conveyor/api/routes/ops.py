"""Operations: liveness, readiness, and Prometheus metrics.

``/metrics`` answers a scraper that sends the operator's token (``CONVEYOR_METRICS_TOKEN``,
as ``Authorization: Bearer``) with the whole server's numbers, and an owner of a workspace
(an API key or a session) with that workspace's numbers only; anyone else gets a 401."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from sqlalchemy import Connection, func, select, text

from conveyor.api.auth import SESSION_COOKIE, authenticate, base_app, bearer, resolve_scope
from conveyor.api.bodies import JsonRoute
from conveyor.api.problems import documented
from conveyor.errors import InputError, StoreUnavailable
from conveyor.live import Feed
from conveyor.store import schedules
from conveyor.store.accounts import Principal, Role
from conveyor.store.commits import GroupCommits
from conveyor.store.tables import executions, steps, workflows

router = APIRouter(tags=["operations"], route_class=JsonRoute)
STEP_WINDOW = 10_000
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class _StepDurations:
    """Step durations over the most recent ``STEP_WINDOW`` finished steps, as a gauge
    histogram (the window moves, so the buckets are not monotonic counters)."""

    def __init__(self, seconds: list[float]) -> None:
        self.seconds = seconds

    def collect(self) -> list[GaugeHistogramMetricFamily]:
        buckets = [(str(b), sum(1 for s in self.seconds if s <= b)) for b in BUCKETS]
        buckets.append(("+Inf", len(self.seconds)))
        return [
            GaugeHistogramMetricFamily(
                "conveyor_step_duration_seconds",
                f"Durations of the last {STEP_WINDOW} finished steps",
                buckets=buckets,
                gsum_value=sum(self.seconds),
            )
        ]


class _GroupCommits:
    """This process's group commits (its embedded worker's steps): transitions per commit."""

    def __init__(self, commits: GroupCommits) -> None:
        self.commits = commits

    def collect(self) -> list[HistogramMetricFamily]:
        return [
            HistogramMetricFamily(
                "conveyor_group_commit_transitions",
                "Runner transitions per group commit in this process",
                buckets=self.commits.cumulative(),
                sum_value=self.commits.transitions,
            )
        ]


class _ScheduleOccurrences:
    """Schedule occurrences recorded, by status, from the database: every scheduler
    process's work, so a skipped or missed occurrence is counted wherever it happened."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(
            "conveyor_schedule_occurrences",
            "Schedule occurrences recorded, by status (started, skipped, missed, buffered)",
            labels=["status"],
        )
        for status, n in self.counts.items():
            family.add_metric([status], n)
        return [family]


class _LiveDelivery:
    """This process's live streams: how many follow the feed, what the feed read and what
    the streams wrote, and the CPU that cost (the event loop's share; see live.Delivered)."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    def collect(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        delivered = self.feed.delivered
        return [
            GaugeMetricFamily(
                "conveyor_live_subscribers",
                "Streams (SSE and WebSocket subscriptions) following the live feed now",
                value=self.feed.subscribers,
            ),
            CounterMetricFamily(
                "conveyor_live_reads",
                "Batches of events the live feed read, once for every stream",
                value=self.feed.reads,
            ),
            CounterMetricFamily(
                "conveyor_live_read_seconds",
                "Wall time of the live feed's reads (the database's time included)",
                value=delivered.read_seconds,
            ),
            CounterMetricFamily(
                "conveyor_live_writes",
                "Writes of live messages to streams (each carries what was pending for its stream)",
                value=delivered.writes,
            ),
            CounterMetricFamily(
                "conveyor_live_bytes", "Bytes of live messages written", value=delivered.bytes
            ),
            CounterMetricFamily(
                "conveyor_live_cpu_seconds",
                "Event loop CPU time spent fanning batches out and rendering and writing them",
                value=delivered.cpu_seconds,
            ),
        ]


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


@router.get("/readyz", summary="The database answers")
async def readyz(request: Request) -> dict[str, str]:
    await base_app(request).store.read(_ping)
    return {"status": "ready"}


def _snapshot(conn: Connection, workspace_id: str | None) -> dict[str, Any]:
    """The numbers, over every workspace (None) or over one."""
    live = select(executions.c.status, func.count()).where(
        executions.c.status.in_(("queued", "running", "waiting"))
    )
    totals = select(
        func.coalesce(func.sum(workflows.c.executions_succeeded), 0),
        func.coalesce(func.sum(workflows.c.executions_failed), 0),
        func.coalesce(func.sum(workflows.c.executions_cancelled), 0),
        func.coalesce(func.sum(workflows.c.executions_timed_out), 0),
    )
    queued = select(func.count()).where(executions.c.status == "queued")
    latest = (
        select(steps.c.started_at, steps.c.finished_at)
        .where(steps.c.finished_at.is_not(None), steps.c.attempt > 0)
        .order_by(steps.c.id.desc())
        .limit(STEP_WINDOW)
    )
    if workspace_id is not None:
        live = live.where(executions.c.workspace_id == workspace_id)
        totals = totals.where(workflows.c.workspace_id == workspace_id)
        queued = queued.where(executions.c.workspace_id == workspace_id)
        latest = latest.where(
            steps.c.execution_id.in_(
                select(executions.c.id).where(executions.c.workspace_id == workspace_id)
            )
        )
    by_status = conn.execute(live.group_by(executions.c.status)).all()
    finished = conn.execute(totals).one()
    due = conn.execute(queued).scalar()
    recent = conn.execute(latest).all()
    return {
        "step_seconds": [
            (r.finished_at - r.started_at).total_seconds()
            for r in recent
            if r.started_at is not None
        ],
        "live": {str(s): int(n) for s, n in by_status},
        "finished": dict(
            zip(
                ("succeeded", "failed", "cancelled", "timed_out"),
                (int(v) for v in finished),
                strict=True,
            )
        ),
        "queue_depth": int(due or 0),
        "schedule_occurrences": schedules.fire_counts(conn, workspace_id),
    }


async def scraper(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    workspace: Annotated[
        str | None,
        Query(max_length=200, description="an owner's workspace (when they own several)"),
    ] = None,
) -> str | None:
    """None for the operator's scrape token (every workspace); else the id of the workspace
    the caller owns, whose numbers alone they see."""
    token: str | None = request.app.state.metrics_token
    sent = credentials.credentials if credentials else None
    if token and sent and hmac.compare_digest(sent.encode(), token.encode()):
        return None
    principal = await authenticate(request, sent, request.cookies.get(SESSION_COOKIE))
    ws = workspace or _owned(principal)
    scope = await resolve_scope(base_app(request), principal, ws, Role.OWNER)
    return scope.workspace_id


def _owned(principal: Principal) -> str:
    owned = [w for w, role in principal.roles.items() if role == Role.OWNER]
    if len(owned) == 1:
        return owned[0]
    if not owned and principal.roles:
        return next(iter(principal.roles))  # refused below, with the role named
    raise InputError("name the workspace whose metrics you want: /metrics?workspace=NAME")


@router.get(
    "/metrics",
    summary="Prometheus metrics (the scrape token: every workspace; an owner: theirs)",
    response_class=Response,
    responses=documented(400, 401, 403, 404, 422),
)
async def metrics(
    request: Request, workspace_id: Annotated[str | None, Depends(scraper)]
) -> Response:
    app = request.app
    try:
        snapshot = await base_app(request).store.read(_snapshot, workspace_id)
    except StoreUnavailable:
        snapshot = None
    registry = CollectorRegistry()
    executions_gauge = Gauge(
        "conveyor_executions", "Executions by status", ["status"], registry=registry
    )
    if snapshot is not None:
        for status, n in {**snapshot["finished"], **snapshot["live"]}.items():
            executions_gauge.labels(status=status).set(n)
        Gauge("conveyor_queue_depth", "Queued executions", registry=registry).set(
            snapshot["queue_depth"]
        )
        Gauge("conveyor_running_executions", "Running executions", registry=registry).set(
            snapshot["live"].get("running", 0)
        )
    Gauge("conveyor_database_up", "1 when the database answered", registry=registry).set(
        0 if snapshot is None else 1
    )
    # The process's own slots are no one workspace's.
    worker = getattr(app.state, "worker", None) if workspace_id is None else None
    slots = Gauge("conveyor_worker_slots", "Embedded worker slots", ["state"], registry=registry)
    if worker is not None:
        slots.labels(state="in_use").set(len(worker.running))
        slots.labels(state="total").set(worker.settings.concurrency)
        registry.register(_GroupCommits(base_app(request).store.commits))
    feed = getattr(app.state, "feed", None) if workspace_id is None else None
    if feed is not None:
        registry.register(_LiveDelivery(feed))
    if snapshot is not None:
        registry.register(_StepDurations(snapshot["step_seconds"]))
        registry.register(_ScheduleOccurrences(snapshot["schedule_occurrences"]))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
