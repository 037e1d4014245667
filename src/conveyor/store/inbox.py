"""The inbox: notifications (read or unread) and tasks (open or done) that steps make for
people, and the queries the API, the dashboard and the CLI share (sync, on a Connection).

Once per step: a notification or task carries its step's idempotency key (``execution id :
node id``, unique), so a retried step finds what its earlier attempt made. Each new one is
announced as an event of its execution (``notification.created``, ``task.created``): the
workspace stream carries it, and a dashboard re-reads its unread count then.

Who sees what: a notification without a recipient is for the whole workspace, one with a
recipient for that user only; a reader of ``None`` (the CLI, the operator) sees them all.
Reading one marks it read for everybody who sees it (a shared inbox, like a team channel).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from conveyor.errors import InputError, NodeError, NotFound
from conveyor.store.controls import add_event
from conveyor.store.database import StoreDialect, new_id
from conveyor.store.tables import (
    executions,
    memberships,
    notifications,
    tasks,
    users,
    workflows,
)

LIST_LIMIT = 200
TaskStatus = Literal["open", "done"]


@dataclass(frozen=True)
class Reader:
    """The person looking: what is addressed to them, and what "me" means."""

    user_id: str
    email: str


def reader_for(conn: Connection, email: str) -> Reader:
    """The user with ``email`` as a Reader (the CLI's ``--user``)."""
    row = conn.execute(
        select(users.c.id, users.c.email).where(func.lower(users.c.email) == email.strip().lower())
    ).first()
    if row is None:
        raise NotFound(f"no user has the email '{email}'")
    return Reader(str(row.id), str(row.email))


def _step(conn: Connection, execution_id: str) -> str:
    workspace: str = conn.execute(
        select(executions.c.workspace_id).where(executions.c.id == execution_id)
    ).scalar_one()
    return workspace


def _member(conn: Connection, workspace_id: str, who: str) -> Any:
    """The workspace member with email (any case) or user id ``who``, or None."""
    query = (
        select(users.c.id, users.c.email)
        .select_from(users.join(memberships, memberships.c.user_id == users.c.id))
        .where(
            memberships.c.workspace_id == workspace_id,
            or_(func.lower(users.c.email) == who.strip().lower(), users.c.id == who.strip()),
        )
    )
    return conn.execute(query).first()


def create_notification(
    conn: Connection,
    dialect: StoreDialect,
    execution_id: str,
    node_id: str,
    payload: dict[str, Any],
    now: datetime,
) -> str:
    """The notification of step ``execution_id:node_id``, made on its first call only.
    ``payload``: title, message, channel, data, and ``to`` (a member's email or user id;
    absent: the whole workspace)."""
    key = f"{execution_id}:{node_id}"
    found = conn.execute(
        select(notifications.c.id).where(notifications.c.idempotency_key == key)
    ).scalar()
    if found is not None:
        return str(found)
    workspace = _step(conn, execution_id)
    recipient = None
    if payload.get("to"):
        member = _member(conn, workspace, str(payload["to"]))
        if member is None:
            raise NodeError(
                f"no member of this workspace has the email or user id '{payload['to']}'",
                non_retryable=True,
            )
        recipient = str(member.id)
    notification_id = new_id()
    conn.execute(
        insert(notifications),
        {
            "id": notification_id,
            "workspace_id": workspace,
            "execution_id": execution_id,
            "node_id": node_id,
            "channel": payload.get("channel", "in-app"),
            "title": payload.get("title", ""),
            "message": payload.get("message", ""),
            "data": payload.get("data"),
            "recipient_id": recipient,
            "idempotency_key": key,
            "created_at": now,
        },
    )
    data = {"notification_id": notification_id, "node_id": node_id, "recipient_id": recipient}
    add_event(conn, dialect, execution_id, workspace, "notification.created", data, now)
    return notification_id


def create_task(
    conn: Connection,
    dialect: StoreDialect,
    execution_id: str,
    node_id: str,
    payload: dict[str, Any],
    now: datetime,
) -> str:
    """The task of step ``execution_id:node_id``, made on its first call only. ``payload``:
    title, body, due_at, and ``assignee`` (an email or a member's user id; a member is
    linked by id, anyone else kept by email)."""
    key = f"{execution_id}:{node_id}"
    found = conn.execute(select(tasks.c.id).where(tasks.c.idempotency_key == key)).scalar()
    if found is not None:
        return str(found)
    workspace = _step(conn, execution_id)
    assignee_id, assignee_email = None, None
    if payload.get("assignee"):
        who = str(payload["assignee"]).strip()
        member = _member(conn, workspace, who)
        if member is not None:
            assignee_id, assignee_email = str(member.id), str(member.email)
        elif "@" in who:
            assignee_email = who
        else:
            raise NodeError(
                f"assignee '{who}' is neither an email nor a member's user id",
                non_retryable=True,
            )
    task_id = new_id()
    conn.execute(
        insert(tasks),
        {
            "id": task_id,
            "workspace_id": workspace,
            "execution_id": execution_id,
            "node_id": node_id,
            "idempotency_key": key,
            "title": payload.get("title", ""),
            "body": payload.get("body", ""),
            "assignee_id": assignee_id,
            "assignee_email": assignee_email,
            "due_at": payload.get("due_at"),
            "status": "open",
            "created_at": now,
        },
    )
    data = {"task_id": task_id, "node_id": node_id, "assignee_id": assignee_id}
    add_event(conn, dialect, execution_id, workspace, "task.created", data, now)
    return task_id


# -- notifications ---------------------------------------------------------------------------
def _addressed(reader: Reader | None) -> Any:
    n = notifications.c
    if reader is None:
        return n.id.is_not(None)
    return or_(n.recipient_id.is_(None), n.recipient_id == reader.user_id)


def _notification_query() -> Any:
    n = notifications.c
    return select(
        n.id,
        n.execution_id,
        n.node_id,
        n.channel,
        n.title,
        n.message,
        n.data,
        n.recipient_id,
        n.created_at,
        n.read_at,
        n.read_by,
        workflows.c.name.label("workflow_name"),
    ).select_from(
        notifications.outerjoin(executions, executions.c.id == n.execution_id).outerjoin(
            workflows, workflows.c.id == executions.c.workflow_id
        )
    )


def list_notifications(
    conn: Connection,
    workspace_id: str,
    reader: Reader | None,
    *,
    unread: bool = False,
    before: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first; ``before``: only those older than that notification id."""
    n = notifications.c
    query = _notification_query().where(n.workspace_id == workspace_id, _addressed(reader))
    if unread:
        query = query.where(n.read_at.is_(None))
    if before is not None:
        query = query.where(n.id < before)
    query = query.order_by(n.id.desc()).limit(min(limit, LIST_LIMIT))
    return [dict(r) for r in conn.execute(query).mappings()]


def get_notification(
    conn: Connection, workspace_id: str, reader: Reader | None, notification_id: str
) -> dict[str, Any]:
    n = notifications.c
    row = (
        conn.execute(
            _notification_query().where(
                n.id == notification_id, n.workspace_id == workspace_id, _addressed(reader)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"notification '{notification_id}' not found")
    return dict(row)


def mark_read(
    conn: Connection,
    workspace_id: str,
    reader: Reader | None,
    notification_id: str,
    now: datetime,
) -> dict[str, Any]:
    """Mark one read (reading it again changes nothing); the notification as it is now."""
    found = get_notification(conn, workspace_id, reader, notification_id)
    if found["read_at"] is None:
        conn.execute(
            update(notifications)
            .where(notifications.c.id == notification_id, notifications.c.read_at.is_(None))
            .values(read_at=now, read_by=reader.user_id if reader else None)
        )
    return get_notification(conn, workspace_id, reader, notification_id)


def mark_all_read(conn: Connection, workspace_id: str, reader: Reader | None, now: datetime) -> int:
    """Mark every unread notification the reader sees read; how many were."""
    n = notifications.c
    done = conn.execute(
        update(notifications)
        .where(n.workspace_id == workspace_id, n.read_at.is_(None), _addressed(reader))
        .values(read_at=now, read_by=reader.user_id if reader else None)
    )
    return int(done.rowcount or 0)


# -- tasks -----------------------------------------------------------------------------------
def _mine(reader: Reader) -> Any:
    t = tasks.c
    return or_(
        t.assignee_id == reader.user_id,
        and_(t.assignee_id.is_(None), func.lower(t.assignee_email) == reader.email.lower()),
    )


def _task_query() -> Any:
    t = tasks.c
    return select(
        t.id,
        t.execution_id,
        t.node_id,
        t.title,
        t.body,
        t.assignee_id,
        t.assignee_email,
        t.due_at,
        t.status,
        t.created_at,
        t.done_at,
        t.done_by,
        workflows.c.name.label("workflow_name"),
    ).select_from(
        tasks.outerjoin(executions, executions.c.id == t.execution_id).outerjoin(
            workflows, workflows.c.id == executions.c.workflow_id
        )
    )


def list_tasks(
    conn: Connection,
    workspace_id: str,
    *,
    status: TaskStatus | None = None,
    assignee: Reader | str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first. ``assignee``: a Reader (their tasks, by id or email), or an email."""
    t = tasks.c
    query = _task_query().where(t.workspace_id == workspace_id)
    if status is not None:
        query = query.where(t.status == status)
    if isinstance(assignee, Reader):
        query = query.where(_mine(assignee))
    elif assignee is not None:
        query = query.where(func.lower(t.assignee_email) == assignee.strip().lower())
    if before is not None:
        query = query.where(t.id < before)
    query = query.order_by(t.id.desc()).limit(min(limit, LIST_LIMIT))
    return [dict(r) for r in conn.execute(query).mappings()]


def get_task(conn: Connection, workspace_id: str, task_id: str) -> dict[str, Any]:
    row = (
        conn.execute(
            _task_query().where(tasks.c.id == task_id, tasks.c.workspace_id == workspace_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"task '{task_id}' not found")
    return dict(row)


def set_task_status(
    conn: Connection,
    workspace_id: str,
    task_id: str,
    status: TaskStatus,
    by: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Mark done (who and when) or open again; setting the status it has changes nothing."""
    found = get_task(conn, workspace_id, task_id)
    if found["status"] != status:
        done = status == "done"
        conn.execute(
            update(tasks)
            .where(tasks.c.id == task_id)
            .values(status=status, done_at=now if done else None, done_by=by if done else None)
        )
    return get_task(conn, workspace_id, task_id)


def counts(conn: Connection, workspace_id: str, reader: Reader | None) -> dict[str, int]:
    """What the dashboard's inbox badge shows: unread notifications the reader sees, and
    open tasks assigned to them (all open tasks for a reader of None)."""
    n, t = notifications.c, tasks.c
    unread = conn.execute(
        select(func.count())
        .select_from(notifications)
        .where(n.workspace_id == workspace_id, n.read_at.is_(None), _addressed(reader))
    ).scalar_one()
    open_query = select(func.count()).select_from(tasks)
    open_query = open_query.where(t.workspace_id == workspace_id, t.status == "open")
    if reader is not None:
        open_query = open_query.where(_mine(reader))
    return {"unread": int(unread), "open_tasks": int(conn.execute(open_query).scalar_one())}


def parse_status(value: str | None) -> TaskStatus | None:
    if value is None or value == "all":
        return None
    if value not in ("open", "done"):
        raise InputError(f"status must be open, done or all, not '{value}'")
    return "open" if value == "open" else "done"
