"""Schedules and webhooks rows: kept in step with the ``triggers:`` a definition declares.

Saving a version compares its triggers with the live ones the definition declared before,
by id: an unchanged trigger is not touched (same row, history, next fire time, URL); a
changed one is updated in place (a schedule whose timing changed gets its next fire time
computed afresh by the scheduler); a removed one is deleted (``deleted_at``); a new one is
inserted. Triggers created through the API (``source = 'api'``) are never touched by it.
"""

from __future__ import annotations

import secrets as random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from conveyor.errors import Conflict, NotFound
from conveyor.secrets import new_secret
from conveyor.store.database import new_id
from conveyor.store.prepared import prepared, run_together
from conveyor.store.tables import (
    executions,
    schedules,
    steps,
    webhook_deliveries,
    webhooks,
    workflows,
)

DECLARED = "definition"
CREATED = "api"
# Fields of a schedule that decide when it fires: changing one recomputes the next time.
TIMING = ("cron", "every", "timezone", "jitter")
Seal = Callable[[str, str], str]
"""``seal(plaintext, purpose)``: encrypt a secret for storage (``Keyring.encrypt``)."""


@dataclass(frozen=True)
class TriggerChange:
    """What saving a version did to one trigger. ``secret`` is set only when a secret was
    generated now: it is shown this once and never again."""

    kind: str  # schedule | webhook
    key: str
    id: str
    change: str  # created | updated | deleted
    token: str | None = None
    secret: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def needs_secret(spec: dict[str, Any]) -> bool:
    return bool(spec.get("auth", {}).get("mode", "signature") != "none")


def new_token() -> str:
    """A webhook URL's token: 192 random bits, URL-safe."""
    return random.token_urlsafe(24)


def sync_declared(
    conn: Connection,
    workspace_id: str,
    workflow_id: str,
    declared: list[dict[str, Any]],
    now: datetime,
    seal: Seal,
) -> list[TriggerChange]:
    changes: list[TriggerChange] = []
    for table, kind in ((schedules, "schedule"), (webhooks, "webhook")):
        wanted = {spec["id"]: spec for spec in declared if spec.get("type") == kind}
        live = {
            row.key: row
            for row in conn.execute(
                select(table).where(
                    table.c.workflow_id == workflow_id,
                    table.c.source == DECLARED,
                    table.c.deleted_at.is_(None),
                )
            )
        }
        for key, row in live.items():
            if key not in wanted:
                conn.execute(
                    update(table).where(table.c.id == row.id).values(deleted_at=now, updated_at=now)
                )
                changes.append(TriggerChange(kind, key, row.id, "deleted"))
        for key, spec in wanted.items():
            if key in live:
                change = _update(conn, kind, live[key], spec, now, seal)
            else:
                change = _insert(conn, kind, workspace_id, workflow_id, spec, DECLARED, now, seal)
            if change is not None:
                changes.append(change)
    return changes


def _insert(
    conn: Connection,
    kind: str,
    workspace_id: str,
    workflow_id: str,
    spec: dict[str, Any],
    source: str,
    now: datetime,
    seal: Seal,
) -> TriggerChange:
    trigger_id = new_id()
    row: dict[str, Any] = {
        "id": trigger_id,
        "workspace_id": workspace_id,
        "workflow_id": workflow_id,
        "key": spec["id"],
        "source": source,
        "spec": spec,
        "enabled": spec.get("enabled", True),
        "created_at": now,
        "updated_at": now,
    }
    if kind == "schedule":
        taken = _live_key(conn, schedules, workflow_id, spec["id"])
        if taken:
            raise Conflict(f"the workflow already has a schedule '{spec['id']}'")
        conn.execute(insert(schedules), row)
        return TriggerChange(kind, spec["id"], trigger_id, "created")
    if _live_key(conn, webhooks, workflow_id, spec["id"]):
        raise Conflict(f"the workflow already has a webhook '{spec['id']}'")
    secret = new_secret() if needs_secret(spec) else None
    token = new_token()
    row.update(
        token=token,
        secret=None if secret is None else seal(secret, f"webhook:{trigger_id}"),
    )
    conn.execute(insert(webhooks), row)
    return TriggerChange(kind, spec["id"], trigger_id, "created", token, secret)


def _live_key(conn: Connection, table: Any, workflow_id: str, key: str) -> bool:
    return (
        conn.execute(
            select(table.c.id).where(
                table.c.workflow_id == workflow_id,
                table.c.key == key,
                table.c.deleted_at.is_(None),
            )
        ).first()
        is not None
    )


def _update(
    conn: Connection, kind: str, row: Any, spec: dict[str, Any], now: datetime, seal: Seal
) -> TriggerChange | None:
    if row.spec == spec:
        return None
    table = schedules if kind == "schedule" else webhooks
    values: dict[str, Any] = {"spec": spec, "updated_at": now}
    if spec.get("enabled", True) != row.spec.get("enabled", True):
        values["enabled"] = spec.get("enabled", True)
    secret = None
    if kind == "schedule":
        retimed = any(spec.get(f) != row.spec.get(f) for f in TIMING)
        if retimed or (values.get("enabled") and not row.enabled):
            values["next_fire_at"] = None
    elif needs_secret(spec) and row.secret is None:
        secret = new_secret()
        values["secret"] = seal(secret, f"webhook:{row.id}")
    elif not needs_secret(spec):
        values["secret"] = None
    conn.execute(update(table).where(table.c.id == row.id).values(**values))
    return TriggerChange(kind, row.key, row.id, "updated", secret=secret)


def create(
    conn: Connection,
    kind: str,
    workspace_id: str,
    workflow_id: str,
    spec: dict[str, Any],
    now: datetime,
    seal: Seal,
) -> TriggerChange:
    """A trigger created through the API or CLI (not declared by the definition)."""
    return _insert(conn, kind, workspace_id, workflow_id, spec, CREATED, now, seal)


def get(conn: Connection, kind: str, workspace_id: str, trigger_id: str) -> dict[str, Any]:
    """A live trigger of this workspace, by id."""
    table = schedules if kind == "schedule" else webhooks
    row = (
        conn.execute(
            select(table).where(
                table.c.id == trigger_id,
                table.c.workspace_id == workspace_id,
                table.c.deleted_at.is_(None),
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"{kind} '{trigger_id}' not found")
    return dict(row)


def list_for_workflow(
    conn: Connection, kind: str, workspace_id: str, workflow_id: str
) -> list[dict[str, Any]]:
    table = schedules if kind == "schedule" else webhooks
    rows = conn.execute(
        select(table)
        .where(
            table.c.workspace_id == workspace_id,
            table.c.workflow_id == workflow_id,
            table.c.deleted_at.is_(None),
        )
        .order_by(table.c.key)
    ).mappings()
    return [dict(r) for r in rows]


def set_enabled(
    conn: Connection, kind: str, workspace_id: str, trigger_id: str, enabled: bool, now: datetime
) -> dict[str, Any]:
    row = get(conn, kind, workspace_id, trigger_id)
    table = schedules if kind == "schedule" else webhooks
    values: dict[str, Any] = {"enabled": enabled, "updated_at": now}
    if kind == "schedule" and enabled and not row["enabled"]:
        values["next_fire_at"] = None  # no catch-up for the time it was disabled
    conn.execute(update(table).where(table.c.id == trigger_id).values(**values))
    return {**row, **values}


def delete(conn: Connection, kind: str, workspace_id: str, trigger_id: str, now: datetime) -> None:
    """Delete a trigger. One the definition declares comes back with its next version
    unless the definition drops it; the token of a deleted webhook is never reused."""
    get(conn, kind, workspace_id, trigger_id)
    table = schedules if kind == "schedule" else webhooks
    conn.execute(
        update(table).where(table.c.id == trigger_id).values(deleted_at=now, updated_at=now)
    )


# -- webhooks: the public route and management ---------------------------------------------


def webhook_by_token(conn: Connection, token: str) -> dict[str, Any] | None:
    """The webhook behind a URL token with its workflow's status (deleted ones too: the
    route answers 404 for them, and a token is never given out again)."""
    row = (
        conn.execute(
            select(webhooks, workflows.c.status.label("workflow_status"))
            .join(workflows, workflows.c.id == webhooks.c.workflow_id)
            .where(webhooks.c.token == token)
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


def list_webhooks(conn: Connection, workspace_id: str) -> list[dict[str, Any]]:
    """Every live webhook of a workspace, with its workflow's name."""
    rows = conn.execute(
        select(webhooks, workflows.c.name.label("workflow_name"))
        .join(workflows, workflows.c.id == webhooks.c.workflow_id)
        .where(webhooks.c.workspace_id == workspace_id, webhooks.c.deleted_at.is_(None))
        .order_by(workflows.c.name, webhooks.c.key)
    ).mappings()
    return [dict(r) for r in rows]


DELIVERY_COLUMNS = (
    "webhook_id",
    "delivery_id",
    "received_at",
    "method",
    "status_code",
    "outcome",
    "detail",
    "execution_id",
    "client",
)


def _insert_delivery() -> Any:
    d = webhook_deliveries.c
    return insert(webhook_deliveries).values(
        {k: bindparam(k, type_=d[k].type) for k in DELIVERY_COLUMNS}
    )


def _note_delivery() -> Any:
    return (
        update(webhooks)
        .where(webhooks.c.id == bindparam("webhook_id"))
        .values(last_delivery_at=bindparam("received_at", type_=webhooks.c.last_delivery_at.type))
    )


def record_delivery(conn: Connection, delivery: dict[str, Any]) -> None:
    """Keep one request a webhook answered (and note when it last had one): two prepared
    statements in one round trip where the driver can (every request pays for them)."""
    row = {k: delivery[k] for k in DELIVERY_COLUMNS}
    run_together(
        conn,
        [
            (prepared(conn, "webhooks.insert_delivery", _insert_delivery), row),
            (prepared(conn, "webhooks.note_delivery", _note_delivery), row),
        ],
    )


def list_deliveries(
    conn: Connection, workspace_id: str, webhook_id: str, limit: int
) -> list[dict[str, Any]]:
    """A webhook's latest deliveries, newest first."""
    get(conn, "webhook", workspace_id, webhook_id)
    d = webhook_deliveries.c
    rows = conn.execute(
        select(
            d.received_at,
            d.method,
            d.status_code,
            d.outcome,
            d.detail,
            d.delivery_id,
            d.execution_id,
            d.client,
        )
        .where(d.webhook_id == webhook_id)
        .order_by(d.received_at.desc(), d.id.desc())
        .limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def set_secret(
    conn: Connection,
    workspace_id: str,
    webhook_id: str,
    secret: str | None,
    now: datetime,
    seal: Seal,
) -> str:
    """Replace a webhook's secret with ``secret`` (one a provider gave) or a new one;
    returns it (shown this once)."""
    get(conn, "webhook", workspace_id, webhook_id)
    value = secret or new_secret()
    conn.execute(
        update(webhooks)
        .where(webhooks.c.id == webhook_id)
        .values(secret=seal(value, f"webhook:{webhook_id}"), updated_at=now)
    )
    return value


def node_output(conn: Connection, execution_id: str, node_id: str) -> Any:
    """The output of a node's last succeeded step (a sync webhook's chosen answer)."""
    return conn.execute(
        select(steps.c.output)
        .where(
            steps.c.execution_id == execution_id,
            steps.c.node_id == node_id,
            steps.c.status == "succeeded",
        )
        .order_by(steps.c.attempt.desc())
        .limit(1)
    ).scalar()


def _finished() -> Any:
    e = executions.c
    return select(e.id, e.status, e.result, e.error).where(e.id == bindparam("id"))


def finished(conn: Connection, execution_id: str, node_id: str | None) -> dict[str, Any]:
    """An execution's status, result and error, with ``node_id``'s output when it is
    finished and a node is named (one read for a sync webhook's answer)."""
    (row,) = prepared(conn, "webhooks.finished", _finished).rows(conn, {"id": execution_id})
    found = dict(row._asdict())
    if node_id is not None and found["status"] == "succeeded":
        found["node_output"] = node_output(conn, execution_id, node_id)
    return found
