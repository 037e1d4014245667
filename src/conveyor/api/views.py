"""Stored rows turned into API representations (progress, live durations, links)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from conveyor.errors import InputError

API = "/api/v1"


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 1)


def progress(row: dict[str, Any]) -> dict[str, Any]:
    total = row["steps_total"]
    completed = row["steps_succeeded"] + row["steps_failed"] + row["steps_skipped"]
    return {
        "total": total,
        "completed": completed,
        "succeeded": row["steps_succeeded"],
        "failed": row["steps_failed"],
        "skipped": row["steps_skipped"],
        "running": row["steps_running"],
        "percentage": round(100.0 * completed / total, 1) if total else 100.0,
    }


def execution(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Duration is live (to ``now``) while the execution has not finished."""
    end = row["finished_at"] or (now if row["started_at"] is not None else None)
    return {
        "id": row["id"],
        "workflow_id": row["workflow_id"],
        "workflow_name": row.get("workflow_name", ""),
        "status": row["status"],
        "trigger_type": row["trigger_type"],
        "trigger_id": row.get("trigger_id"),
        "input": row["input"],
        "result": row["result"],
        "error": row["error"],
        "priority": row["priority"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "duration_ms": _ms(row["started_at"], end),
        "progress": progress(row),
        "usage": {"tokens": row["usage_tokens"], "api_calls": row["usage_api_calls"]},
        "created_by": row["created_by"],
        "retry_of": row["retry_of"],
        "parent_execution_id": row["parent_execution_id"],
        "paused": bool(row.get("paused", False)),
        "blocked_reason": row.get("blocked_reason"),
    }


def step(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    end = row["finished_at"] or (now if row["status"] == "running" else None)
    return {
        "node_id": row["node_id"],
        "node_type": row["node_type"],
        "attempt": row["attempt"],
        "step_index": row["step_index"],
        "status": row["status"],
        "input": row["input"],
        "output": row["output"],
        "error": row["error"],
        "logs": row["logs"],
        "branch": row["branch"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "duration_ms": _ms(row["started_at"], end),
        "wait_until": row.get("wait_until"),
        "wait_signal": row.get("wait_signal"),
        "usage": {"tokens": row["usage_tokens"], "api_calls": row["usage_api_calls"]},
    }


def execution_detail(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        **execution(row, now),
        "version": row["version"],
        "steps": [step(s, now) for s in row["steps"]],
    }


def links(workspace: str, execution_id: str) -> dict[str, str]:
    base = f"{API}/workspaces/{workspace}/executions/{execution_id}"
    return {"self": base, "stream": f"{base}/stream", "cancel": f"{base}/cancel"}


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, row_id = raw.split("|", 1)
        value = datetime.fromisoformat(stamp)
        if value.tzinfo is None or not row_id:
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        raise InputError("the cursor is not one this API returned") from None
    return value, row_id


def encode_name_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def decode_name_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InputError("the cursor is not one this API returned") from None
