"""Workflows and their immutable versions; workspaces they live in."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.errors import InputError, NotFound
from conveyor.store.database import new_id
from conveyor.store.prepared import prepared
from conveyor.store.tables import dumps, executions, workflow_versions, workflows, workspaces

DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class VersionRef:
    workflow_id: str
    workflow_name: str
    version_id: str
    version: int
    definition: dict[str, Any]
    created: bool = False
    status: str = "active"
    # What saving this version did to the triggers it declares (store/triggers.py).
    triggers: tuple[Any, ...] = ()


def workspace_id(conn: Connection, name: str, now: datetime) -> str:
    """The id of a workspace, created on first use."""
    found = conn.execute(select(workspaces.c.id).where(workspaces.c.name == name)).scalar()
    if found is not None:
        return str(found)
    new = new_id()
    try:
        # A savepoint: on PostgreSQL another process's first command may create it at the
        # same moment (SQLite writers are serialized), and the loser reads the winner's row.
        with conn.begin_nested():
            conn.execute(insert(workspaces), {"id": new, "name": name, "created_at": now})
    except IntegrityError:
        return str(
            conn.execute(select(workspaces.c.id).where(workspaces.c.name == name)).scalar_one()
        )
    return new


def digest(definition: dict[str, Any]) -> str:
    canonical = dumps(definition).encode()
    return hashlib.sha256(canonical).hexdigest()


def apply_definition(
    conn: Connection,
    workspace: str,
    definition: dict[str, Any],
    now: datetime,
    status: str = "active",
) -> VersionRef:
    """Store a definition as the workflow's next version; unchanged definitions reuse the
    latest version (so applying the same file twice creates nothing)."""
    name = definition["name"]
    wf = conn.execute(
        select(workflows.c.id, workflows.c.latest_version)
        .where(workflows.c.workspace_id == workspace, workflows.c.name == name)
        .with_for_update()
    ).first()
    sha = digest(definition)
    if wf is None:
        workflow_id, version = new_id(), 1
        conn.execute(
            insert(workflows),
            {
                "id": workflow_id,
                "workspace_id": workspace,
                "name": name,
                "status": status,
                "latest_version": 1,
                "created_at": now,
                "updated_at": now,
            },
        )
    else:
        workflow_id, version = wf.id, wf.latest_version
        latest = conn.execute(
            select(workflow_versions.c.id, workflow_versions.c.digest).where(
                workflow_versions.c.workflow_id == workflow_id,
                workflow_versions.c.version == version,
            )
        ).first()
        if latest is not None and latest.digest == sha:
            return VersionRef(workflow_id, name, latest.id, version, definition)
        version += 1
        conn.execute(
            update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(latest_version=version, updated_at=now)
        )
    version_id = new_id()
    conn.execute(
        insert(workflow_versions),
        {
            "id": version_id,
            "workflow_id": workflow_id,
            "version": version,
            "definition": definition,
            "digest": sha,
            "created_at": now,
        },
    )
    return VersionRef(workflow_id, name, version_id, version, definition, created=True)


def _find_version() -> Any:
    w, v = workflows.c, workflow_versions.c
    return (
        select(w.id, w.name, w.status, v.id.label("version_id"), v.version, v.definition)
        .join(
            workflow_versions,
            and_(
                v.workflow_id == w.id,
                v.version == func.coalesce(bindparam("version", type_=Integer()), w.latest_version),
            ),
        )
        .where(
            w.workspace_id == bindparam("workspace"),
            or_(w.id == bindparam("workflow"), w.name == bindparam("workflow")),
        )
    )


def find_version(
    conn: Connection, workspace: str, workflow: str, version: int | None = None
) -> VersionRef:
    """A workflow (by id or name) at a version (default: latest), in one query."""
    found = prepared(conn, "workflows.find_version", _find_version).rows(
        conn, {"workspace": workspace, "workflow": workflow, "version": version}
    )
    if not found:
        wf = conn.execute(
            select(workflows.c.name).where(
                workflows.c.workspace_id == workspace,
                or_(workflows.c.id == workflow, workflows.c.name == workflow),
            )
        ).first()
        if wf is None:
            raise NotFound(f"workflow '{workflow}' not found")
        raise NotFound(f"workflow '{wf.name}' has no version {version}")
    r = found[0]
    return VersionRef(r.id, r.name, r.version_id, r.version, r.definition, status=r.status)


def list_workflows(conn: Connection, workspace: str) -> list[dict[str, Any]]:
    rows = (
        conn.execute(
            select(workflows)
            .where(workflows.c.workspace_id == workspace)
            .order_by(workflows.c.name)
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


WORKFLOW_STATUSES = ("draft", "active", "paused", "archived")


def get_workflow(conn: Connection, workspace: str, ref: str) -> dict[str, Any]:
    row = (
        conn.execute(
            select(workflows).where(
                workflows.c.workspace_id == workspace,
                or_(workflows.c.id == ref, workflows.c.name == ref),
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"workflow '{ref}' not found")
    return dict(row)


def list_page(
    conn: Connection,
    workspace: str,
    limit: int,
    after: str | None,
    offset: int = 0,
    *,
    since: datetime,
    search: str | None = None,
    statuses: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Workflows by name, each with its last execution and the executions created since
    ``since``; ``search`` is a case-insensitive part of the name. ``after`` is the last
    name of the previous page, ``offset`` the rows skipped after it.

    One statement: per row, two index-backed lookups (ix_executions_workflow_created), so a
    page costs the same whatever the history size."""
    w, e = workflows.c, executions.c
    last_id = (
        select(e.id)
        .where(e.workflow_id == w.id)
        .order_by(e.created_at.desc())
        .limit(1)
        .correlate(workflows)
        .scalar_subquery()
    )
    recent = (
        select(func.count())
        .where(e.workflow_id == w.id, e.created_at >= since)
        .correlate(workflows)
        .scalar_subquery()
    )
    last = executions.alias("last_execution")
    query = (
        select(
            workflows,
            last.c.id.label("last_execution_id"),
            last.c.status.label("last_execution_status"),
            last.c.created_at.label("last_execution_created_at"),
            recent.label("executions_24h"),
        )
        .select_from(workflows.outerjoin(last, last.c.id == last_id))
        .where(w.workspace_id == workspace)
    )
    if after is not None:
        query = query.where(w.name > after)
    if search:
        query = query.where(func.lower(w.name).contains(search.lower(), autoescape=True))
    if statuses:
        query = query.where(w.status.in_(statuses))
    query = query.order_by(w.name).limit(limit).offset(offset)
    return [_item(dict(r)) for r in conn.execute(query).mappings().all()]


def _item(row: dict[str, Any]) -> dict[str, Any]:
    last_id = row.pop("last_execution_id")
    status = row.pop("last_execution_status")
    created_at = row.pop("last_execution_created_at")
    finished = row["executions_finished"]
    return {
        **row,
        "last_execution": None
        if last_id is None
        else {"id": last_id, "status": status, "created_at": created_at},
        "success_rate": round(row["executions_succeeded"] / finished, 4) if finished else None,
    }


def list_versions(conn: Connection, workspace: str, ref: str) -> list[dict[str, Any]]:
    workflow = get_workflow(conn, workspace, ref)
    rows = (
        conn.execute(
            select(
                workflow_versions.c.id,
                workflow_versions.c.version,
                workflow_versions.c.digest,
                workflow_versions.c.created_at,
            )
            .where(workflow_versions.c.workflow_id == workflow["id"])
            .order_by(workflow_versions.c.version.desc())
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


def set_status(
    conn: Connection, workspace: str, ref: str, status: str, now: datetime
) -> dict[str, Any]:
    if status not in WORKFLOW_STATUSES:
        raise InputError(f"unknown workflow status '{status}'")
    workflow = get_workflow(conn, workspace, ref)
    conn.execute(
        update(workflows)
        .where(workflows.c.id == workflow["id"])
        .values(status=status, updated_at=now)
    )
    return {**workflow, "status": status, "updated_at": now}
