"""Credentials rows: stored sealed (encrypted), listed without their secrets, and found in
the definitions that use them.

Functions take a connection and run inside the caller's transaction. ``seal`` and
``unseal`` are the keyring's encrypt / decrypt: the store never sees a key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from conveyor import credentials as kinds
from conveyor.errors import Conflict, NotFound
from conveyor.store.database import new_id
from conveyor.store.tables import credentials, webhooks, workflow_versions, workflows

Seal = Callable[[str, str], str]
Unseal = Callable[[str, str], str]


def purpose(credential_id: str) -> str:
    """What a sealed value is bound to: moved to another row, it does not decrypt."""
    return f"credential:{credential_id}"


def _summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "type": row.type,
        "description": row.description,
        "fields": row.public,
        "secret_fields": kinds.secret_fields(row.type),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _row(conn: Connection, workspace_id: str, name: str) -> Any:
    row = conn.execute(
        select(credentials).where(
            credentials.c.workspace_id == workspace_id, credentials.c.name == name
        )
    ).first()
    if row is None:
        raise NotFound(f"credential '{name}' not found")
    return row


def create(
    conn: Connection,
    workspace_id: str,
    name: str,
    type_name: str,
    data: dict[str, Any],
    description: str,
    user_id: str | None,
    now: datetime,
    seal: Seal,
) -> dict[str, Any]:
    kinds.check_name(name)
    exists = conn.execute(
        select(credentials.c.id).where(
            credentials.c.workspace_id == workspace_id, credentials.c.name == name
        )
    ).first()
    if exists is not None:
        raise Conflict(f"credential '{name}' already exists; replace it with PUT")
    checked = kinds.check(type_name, data)
    credential_id = new_id()
    conn.execute(
        insert(credentials).values(
            id=credential_id,
            workspace_id=workspace_id,
            name=name,
            type=type_name,
            description=description,
            public=kinds.public(type_name, checked),
            secret=seal(json.dumps(checked), purpose(credential_id)),
            created_at=now,
            updated_at=now,
            updated_by=user_id,
        )
    )
    return get(conn, workspace_id, name)


def replace(
    conn: Connection,
    workspace_id: str,
    name: str,
    type_name: str | None,
    data: dict[str, Any],
    description: str | None,
    user_id: str | None,
    now: datetime,
    seal: Seal,
) -> dict[str, Any]:
    """Replace a credential's fields (every field is given again: none is read back)."""
    row = _row(conn, workspace_id, name)
    type_name = type_name or row.type
    checked = kinds.check(type_name, data)
    values: dict[str, Any] = {
        "type": type_name,
        "public": kinds.public(type_name, checked),
        "secret": seal(json.dumps(checked), purpose(row.id)),
        "updated_at": now,
        "updated_by": user_id,
    }
    if description is not None:
        values["description"] = description
    conn.execute(update(credentials).where(credentials.c.id == row.id).values(**values))
    return get(conn, workspace_id, name)


def remove(conn: Connection, workspace_id: str, name: str) -> None:
    row = _row(conn, workspace_id, name)
    conn.execute(delete(credentials).where(credentials.c.id == row.id))


def get(conn: Connection, workspace_id: str, name: str) -> dict[str, Any]:
    found = _summary(_row(conn, workspace_id, name))
    found["used_by"] = used_by(conn, workspace_id).get(name, [])
    return found


def listing(conn: Connection, workspace_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(credentials)
        .where(credentials.c.workspace_id == workspace_id)
        .order_by(credentials.c.name)
    ).all()
    users = used_by(conn, workspace_id)
    return [{**_summary(r), "used_by": users.get(r.name, [])} for r in rows]


def sealed(conn: Connection, workspace_id: str) -> list[tuple[str, str, str, str]]:
    """``(id, name, type, sealed fields)`` of every credential of a workspace."""
    rows = conn.execute(
        select(
            credentials.c.id, credentials.c.name, credentials.c.type, credentials.c.secret
        ).where(credentials.c.workspace_id == workspace_id)
    ).all()
    return [(r.id, r.name, r.type, r.secret) for r in rows]


_MENTION = re.compile(
    r"""secrets\s*(?:\.\s*([A-Za-z][A-Za-z0-9_]*)|\[\s*['"]([A-Za-z][A-Za-z0-9_-]*)['"]\s*\])"""
)


def mentions(definition: Any) -> set[str]:
    """The credential names a definition uses: ``credential: NAME`` anywhere in a node's
    config, and ``secrets.NAME`` / ``secrets['NAME']`` in its templates."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "credential" and isinstance(inner, str):
                    names.add(inner)
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)
        elif isinstance(value, str) and "secrets" in value:
            for match in _MENTION.finditer(value):
                names.add(match.group(1) or match.group(2))

    for node in definition.get("nodes", []) if isinstance(definition, dict) else []:
        walk(node.get("config") if isinstance(node, dict) else None)
    return names


def used_by(conn: Connection, workspace_id: str) -> dict[str, list[dict[str, Any]]]:
    """For each credential name: the workflows whose latest version uses it."""
    rows = conn.execute(
        select(workflows.c.id, workflows.c.name, workflows.c.status, workflow_versions.c.definition)
        .join(
            workflow_versions,
            (workflow_versions.c.workflow_id == workflows.c.id)
            & (workflow_versions.c.version == workflows.c.latest_version),
        )
        .where(workflows.c.workspace_id == workspace_id)
        .order_by(workflows.c.name)
    ).all()
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        for name in sorted(mentions(row.definition)):
            found.setdefault(name, []).append(
                {"workflow_id": row.id, "workflow": row.name, "status": row.status}
            )
    return found


def reseal_all(
    conn: Connection, unseal: Unseal, seal: Seal, stale: Callable[[str], bool]
) -> dict[str, int]:
    """Re-encrypt every credential and webhook secret not sealed with the current key
    (``conveyor credentials rotate-key``); counts of what was rewritten."""
    counts = {"credentials": 0, "webhooks": 0}
    for row in conn.execute(select(credentials.c.id, credentials.c.secret)).all():
        if stale(row.secret):
            value = seal(unseal(row.secret, purpose(row.id)), purpose(row.id))
            conn.execute(update(credentials).where(credentials.c.id == row.id).values(secret=value))
            counts["credentials"] += 1
    for row in conn.execute(
        select(webhooks.c.id, webhooks.c.secret).where(webhooks.c.secret.is_not(None))
    ).all():
        if stale(row.secret):
            label = f"webhook:{row.id}"
            value = seal(unseal(row.secret, label), label)
            conn.execute(update(webhooks).where(webhooks.c.id == row.id).values(secret=value))
            counts["webhooks"] += 1
    return counts
