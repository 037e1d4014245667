"""What triggers did: the recent occurrences of schedules, and the workspace's triggers by
name, for the workflow page's Triggers tab and the monitor's filter (a webhook's deliveries
are ``triggers.list_deliveries``, as the API reads them).

Occurrence rows carry no workspace of their own: every read goes through the schedule row,
whose workspace must be the caller's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, literal, select, union_all

from conveyor.store.tables import schedule_fires, schedules, webhooks, workflows

RECENT = 10


def recent_fires(
    conn: Connection, workspace_id: str, schedule_ids: Iterable[str], limit: int = RECENT
) -> dict[str, list[dict[str, Any]]]:
    """The latest ``limit`` occurrences of each schedule (newest nominal time first),
    skipped and missed ones with their reasons; schedules of other workspaces get none."""
    found: dict[str, list[dict[str, Any]]] = {}
    f = schedule_fires.c
    for schedule_id in schedule_ids:
        rows = conn.execute(
            select(f.id, f.nominal_at, f.status, f.reason, f.execution_id, f.created_at)
            .join(schedules, schedules.c.id == f.schedule_id)
            .where(f.schedule_id == schedule_id, schedules.c.workspace_id == workspace_id)
            .order_by(f.nominal_at.desc())
            .limit(limit)
        ).mappings()
        found[schedule_id] = [dict(r) for r in rows]
    return found


def workspace_triggers(
    conn: Connection, workspace_id: str, limit: int = 500
) -> list[dict[str, Any]]:
    """Every live schedule and webhook of the workspace as ``{id, kind, key, workflow}``,
    by workflow then key: the choices of the monitor's trigger filter."""
    parts = [
        select(
            table.c.id,
            literal(kind).label("kind"),
            table.c.key,
            workflows.c.name.label("workflow"),
        )
        .join(workflows, workflows.c.id == table.c.workflow_id)
        .where(table.c.workspace_id == workspace_id, table.c.deleted_at.is_(None))
        for table, kind in ((schedules, "schedule"), (webhooks, "webhook"))
    ]
    both = union_all(*parts).subquery()
    rows = conn.execute(
        select(both).order_by(both.c.workflow, both.c.key, both.c.kind).limit(limit)
    ).mappings()
    return [dict(r) for r in rows]
