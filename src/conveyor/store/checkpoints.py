"""Step checkpoints: a step's own progress inside one attempt (an inline foreach item, an
agent's tool call), kept so a later attempt of the same step does not do it again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from conveyor.store.tables import step_checkpoints


def save(
    conn: Connection, execution_id: str, node_id: str, key: str, value: Any, now: datetime
) -> None:
    """Keep ``value`` under ``key``; the first value kept wins (a step racing itself after
    a lost lease keeps one)."""
    try:
        with conn.begin_nested():
            conn.execute(
                step_checkpoints.insert().values(
                    execution_id=execution_id, node_id=node_id, key=key, value=value, created_at=now
                )
            )
    except IntegrityError:
        pass


def load(conn: Connection, execution_id: str, node_id: str) -> dict[str, Any]:
    c = step_checkpoints.c
    rows = conn.execute(
        select(c.key, c.value).where(c.execution_id == execution_id, c.node_id == node_id)
    ).all()
    return {r.key: r.value for r in rows}
