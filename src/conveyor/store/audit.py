"""The audit log: append an entry, list a workspace's entries. There is deliberately no
update or delete here (and a trigger refuses both): only an operator's retention job may
prune it (docs/audit.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, insert, or_, select

from conveyor.redaction import SECRET_MARKER
from conveyor.store.tables import audit_log, memberships, users

CHANNELS = ("api", "dashboard", "cli")
# Keys whose values are never kept, wherever they sit in the details.
SECRET_KEYS = frozenset(
    {"password", "secret", "token", "key", "data", "value", "authorization", "cookie", "input"}
)
MAX_TEXT = 200  # each string in the details, cut to this
MAX_ITEMS = 20  # keys of a mapping and items of a list kept in the details


@dataclass(frozen=True)
class Actor:
    """Who acted: a user, an API key (of a user), or a local OS user at the CLI."""

    display: str
    user_id: str | None = None
    api_key_id: str | None = None


@dataclass(frozen=True)
class Source:
    """Where from: the channel, and the client's address and user agent when it has them."""

    channel: str
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class Entry:
    """One action to record. ``details`` is small and is redacted as it is recorded."""

    workspace_id: str | None
    actor: Actor
    action: str
    source: Source
    target_type: str | None = None
    target_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuditFilter:
    """``action``: exact, or a prefix when it ends in ``.*`` (``workflow.*``); ``actor``: a
    user id, an API key id, or the display string (an email, ``cli:alice``)."""

    action: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None  # the cursor: entries older than this one
    limit: int = 50


def redact(value: Any, depth: int = 0) -> Any:
    """``value`` with secret-named keys masked, strings cut short and nesting bounded."""
    if isinstance(value, dict):
        return {
            str(k)[:MAX_TEXT]: SECRET_MARKER
            if str(k).lower() in SECRET_KEYS
            else redact(v, depth + 1)
            for k, v in list(value.items())[:MAX_ITEMS]
        }
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
    if depth > 3:
        return "..."
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:MAX_TEXT]


def record(conn: Connection, entry: Entry, now: datetime) -> int:
    """Append ``entry``; its id. A failed sign-in of a known email names that user, so
    that their workspaces' admins see it."""
    user_id = entry.actor.user_id
    if user_id is None and entry.action == "signin.failed":
        user_id = conn.execute(
            select(users.c.id).where(users.c.email == entry.actor.display)
        ).scalar()
    row_id = conn.execute(
        insert(audit_log)
        .values(
            workspace_id=entry.workspace_id,
            at=now,
            actor_user_id=user_id,
            actor_api_key_id=entry.actor.api_key_id,
            actor=entry.actor.display[:320],
            action=entry.action[:64],
            target_type=entry.target_type and entry.target_type[:32],
            target_id=entry.target_id and entry.target_id[:200],
            details=redact(entry.details) or None,
            ip=entry.source.ip and entry.source.ip[:64],
            user_agent=entry.source.user_agent and entry.source.user_agent[:400],
            channel=entry.source.channel,
        )
        .returning(audit_log.c.id)
    ).scalar_one()
    return int(row_id)


def _visible_in(workspace_id: str) -> ColumnElement[bool]:
    """A workspace's own entries, and the sign-ins of its members (which have none)."""
    members = select(memberships.c.user_id).where(memberships.c.workspace_id == workspace_id)
    return or_(
        audit_log.c.workspace_id == workspace_id,
        and_(audit_log.c.workspace_id.is_(None), audit_log.c.actor_user_id.in_(members)),
    )


def _conditions(f: AuditFilter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if f.action:
        if f.action.endswith(".*"):
            found.append(audit_log.c.action.startswith(f.action[:-1], autoescape=True))
        else:
            found.append(audit_log.c.action == f.action)
    if f.actor:
        found.append(
            or_(
                audit_log.c.actor_user_id == f.actor,
                audit_log.c.actor_api_key_id == f.actor,
                audit_log.c.actor == f.actor,
            )
        )
    if f.since is not None:
        found.append(audit_log.c.at >= f.since)
    if f.until is not None:
        found.append(audit_log.c.at < f.until)
    if f.before_id is not None:
        found.append(audit_log.c.id < f.before_id)
    return found


def list_entries(conn: Connection, workspace_id: str, f: AuditFilter) -> list[dict[str, Any]]:
    """Newest first; one more than ``f.limit`` when there are more (the caller pages)."""
    rows = conn.execute(
        select(audit_log)
        .where(_visible_in(workspace_id), *_conditions(f))
        .order_by(audit_log.c.id.desc())
        .limit(f.limit + 1)
    ).mappings()
    return [_entry(dict(r)) for r in rows]


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "at": row["at"],
        "actor": {
            "display": row["actor"],
            "user_id": row["actor_user_id"],
            "api_key_id": row["actor_api_key_id"],
        },
        "action": row["action"],
        "target": {"type": row["target_type"], "id": row["target_id"]},
        "details": row["details"] or {},
        "source": {
            "channel": row["channel"],
            "ip": row["ip"],
            "user_agent": row["user_agent"],
        },
    }
