"""Statistics over a time range on both backends: executions per bucket of time, per
workflow and per user, with the same counts and the same percentiles (PostgreSQL's
``percentile_cont``, SQLite's interpolation over a sample) on each."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from conveyor.app import Conveyor
from conveyor.errors import InputError
from conveyor.store import accounts, statistics
from conveyor.store.history import ExecutionFilter
from conveyor.store.tables import execution_inputs, executions

START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@dataclass
class Row:
    workflow: int
    minute: float  # minutes after START
    status: str
    duration_ms: int | None = None
    user: str | None = None
    tokens: int = 0


async def _fill(app: Conveyor, rows: list[Row]) -> list[str]:
    """Executions with the given times and outcomes (as finished executions leave them)."""
    refs = [
        await app.apply(
            {
                "name": f"wf-{k}",
                "nodes": [{"id": "t", "type": "transform", "config": {"output": 1}}],
            }
        )
        for k in range(2)
    ]
    values = []
    for i, r in enumerate(rows):
        created = START + timedelta(minutes=r.minute)
        finished = created + timedelta(milliseconds=r.duration_ms or 0)
        values.append(
            {
                "id": f"{i:032x}",
                "workspace_id": app.workspace_id,
                "workflow_id": refs[r.workflow].workflow_id,
                "version_id": refs[r.workflow].version_id,
                "status": r.status,
                "trigger_type": "api",
                "available_at": created,
                "created_at": created,
                "started_at": created if r.duration_ms is not None else None,
                "finished_at": finished if r.duration_ms is not None else None,
                "created_by": r.user,
                "usage_tokens": r.tokens,
                "usage_api_calls": 1,
            }
        )

    def write(conn: Any) -> None:
        conn.execute(insert(executions), values)
        conn.execute(
            insert(execution_inputs), [{"execution_id": v["id"], "input": {}} for v in values]
        )

    await app.store.write(write)
    return [r.workflow_id for r in refs]


def _interpolated(values: list[float], q: float) -> float:
    values = sorted(values)
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return round(values[low] + (values[high] - values[low]) * (position - low), 1)


async def _series(app: Conveyor, f: ExecutionFilter, span: statistics.TimeRange) -> Any:
    return await app.store.read(statistics.timeseries, app.store.db.dialect, f, span)


async def test_a_timeseries_counts_each_bucket_and_its_duration_percentiles(
    conveyor: Conveyor,
) -> None:
    first_hour = [100, 200, 300, 400, 1000]
    rows = [Row(0, 5 + i, "succeeded", ms) for i, ms in enumerate(first_hour)]
    rows += [
        Row(0, 61, "failed", 50),
        Row(1, 62, "timed_out", 70),
        Row(1, 63, "cancelled", 10),
        Row(1, 64, "running"),  # not finished: counted, no duration
        Row(0, 200, "succeeded", 5),  # after the range
    ]
    await _fill(conveyor, rows)
    span = statistics.time_range(START, START + timedelta(hours=3))
    assert span.unit == "minute"
    series = await _series(conveyor, ExecutionFilter(conveyor.workspace_id), span)
    assert len(series) == 180
    span = statistics.time_range(START, START + timedelta(hours=3), "hour")
    series = await _series(conveyor, ExecutionFilter(conveyor.workspace_id), span)
    assert [b["start"] for b in series] == [START + timedelta(hours=h) for h in range(3)]
    first, second, third = series
    assert (first["executions"], first["succeeded"], first["failed"]) == (5, 5, 0)
    assert first["p50_ms"] == _interpolated(first_hour, 0.5) == 300
    assert first["p95_ms"] == _interpolated(first_hour, 0.95) == 880
    assert (second["executions"], second["succeeded"]) == (4, 0)
    assert (second["failed"], second["cancelled"]) == (2, 1)
    assert second["p50_ms"] == 50 and second["p95_ms"] == _interpolated([50, 70, 10], 0.95)
    assert third == {
        "start": START + timedelta(hours=2),
        "executions": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
        "p50_ms": None,
        "p95_ms": None,
    }


async def test_a_timeseries_keeps_its_counts_exact_when_durations_are_sampled(
    conveyor: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statistics, "SAMPLE", 10)
    durations = list(range(10, 410, 10))  # 40 executions in one hour
    await _fill(conveyor, [Row(0, i, "succeeded", ms) for i, ms in enumerate(durations)])
    span = statistics.time_range(START, START + timedelta(hours=2))
    assert span.unit == "minute"
    span = statistics.time_range(START, START + timedelta(hours=2), "hour")
    first = (await _series(conveyor, ExecutionFilter(conveyor.workspace_id), span))[0]
    assert first["executions"] == first["succeeded"] == 40
    assert 10 <= first["p50_ms"] <= first["p95_ms"] <= 400


async def test_per_workflow_and_per_user_over_a_range(conveyor: Conveyor) -> None:
    now = conveyor.store.clock.now()
    ada = await conveyor.store.write(accounts.create_user, "ada@example.com", "pw" * 8, now)
    rows = [
        Row(0, 1, "succeeded", 100, ada, tokens=5),
        Row(0, 2, "succeeded", 300, ada, tokens=7),
        Row(0, 3, "failed", 200, None),
        Row(1, 4, "succeeded", 40, "deleted-user"),
        Row(1, 500, "succeeded", 40, ada),  # outside the range
    ]
    workflow_ids = await _fill(conveyor, rows)
    f = ExecutionFilter(
        conveyor.workspace_id, created_after=START, created_before=START + timedelta(hours=1)
    )
    dialect = conveyor.store.db.dialect
    per_workflow = await conveyor.store.read(statistics.workflow_range_stats, dialect, f)
    assert [w["workflow_name"] for w in per_workflow] == ["wf-0", "wf-1"]
    busiest = per_workflow[0]
    assert busiest["workflow_id"] == workflow_ids[0]
    assert (busiest["executions"], busiest["succeeded"], busiest["failed"]) == (3, 2, 1)
    assert busiest["success_rate"] == round(2 / 3, 4)
    assert (busiest["p50_ms"], busiest["p95_ms"]) == (200, 290)
    assert (busiest["tokens"], busiest["api_calls"]) == (12, 3)
    assert busiest["last_executed_at"] == START + timedelta(minutes=3, milliseconds=200)

    per_user = await conveyor.store.read(statistics.user_range_stats, dialect, f)
    assert [(u["user_id"], u["email"], u["executions"]) for u in per_user] == [
        (ada, "ada@example.com", 2),
        ("deleted-user", None, 1),
    ]
    assert (per_user[0]["p50_ms"], per_user[0]["tokens"]) == (200, 12)


def test_the_bucket_is_the_finest_that_keeps_at_most_500() -> None:
    hour = statistics.time_range(START, START + timedelta(hours=1))
    assert (hour.unit, len(hour.buckets)) == ("minute", 60)
    assert statistics.time_range(START, START + timedelta(hours=9)).unit == "hour"
    assert statistics.time_range(START, START + timedelta(days=30)).unit == "day"
    odd = statistics.time_range(START + timedelta(minutes=30), START + timedelta(hours=2), "hour")
    assert odd.buckets == [START, START + timedelta(hours=1)]  # whole hours
    with pytest.raises(InputError, match="use 'hour'"):
        statistics.time_range(START, START + timedelta(days=1), "minute")
    with pytest.raises(InputError, match="at most 500 days"):
        statistics.time_range(START, START + timedelta(days=501))
    with pytest.raises(InputError, match="empty"):
        statistics.time_range(START, START)
