"""Operations: liveness, readiness, and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily
from sqlalchemy import Connection, func, select, text

from conveyor.api.auth import base_app
from conveyor.api.bodies import JsonRoute
from conveyor.errors import StoreUnavailable
from conveyor.store import schedules
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


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


@router.get("/readyz", summary="The database answers")
async def readyz(request: Request) -> dict[str, str]:
    await base_app(request).store.read(_ping)
    return {"status": "ready"}


def _snapshot(conn: Connection) -> dict[str, Any]:
    by_status = conn.execute(
        select(executions.c.status, func.count())
        .where(executions.c.status.in_(("queued", "running", "waiting")))
        .group_by(executions.c.status)
    ).all()
    finished = conn.execute(
        select(
            func.coalesce(func.sum(workflows.c.executions_succeeded), 0),
            func.coalesce(func.sum(workflows.c.executions_failed), 0),
            func.coalesce(func.sum(workflows.c.executions_cancelled), 0),
            func.coalesce(func.sum(workflows.c.executions_timed_out), 0),
        )
    ).one()
    due = conn.execute(select(func.count()).where(executions.c.status == "queued")).scalar()
    recent = conn.execute(
        select(steps.c.started_at, steps.c.finished_at)
        .where(steps.c.finished_at.is_not(None), steps.c.attempt > 0)
        .order_by(steps.c.id.desc())
        .limit(STEP_WINDOW)
    ).all()
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
        "schedule_occurrences": schedules.fire_counts(conn),
    }


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    app = request.app
    try:
        snapshot = await base_app(request).store.read(_snapshot)
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
    worker = getattr(app.state, "worker", None)
    slots = Gauge("conveyor_worker_slots", "Embedded worker slots", ["state"], registry=registry)
    if worker is not None:
        slots.labels(state="in_use").set(len(worker.running))
        slots.labels(state="total").set(worker.settings.concurrency)
    if snapshot is not None:
        registry.register(_StepDurations(snapshot["step_seconds"]))
        registry.register(_ScheduleOccurrences(snapshot["schedule_occurrences"]))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
