"""Live streams: Server-Sent Events per execution and per workspace, and a WebSocket.

Every message is read from the events table, so a client that reconnects with
``Last-Event-ID`` (any id a stream sent; see ``api/sse.py``) receives every later message
exactly once. The feed only says *when* to read (in-process commits, NOTIFY, or a short poll).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy import Connection, func, select

from conveyor.api import sse, views
from conveyor.api.auth import Scope, read_access, socket_access
from conveyor.api.sse import Position
from conveyor.engine.state import TERMINAL
from conveyor.errors import ConveyorError
from conveyor.live import Feed
from conveyor.store.history import events_after
from conveyor.store.tables import events, executions

router = APIRouter(prefix="/workspaces/{ws}", tags=["streams"])
Read = Annotated[Scope, Depends(read_access)]
TERMINAL_EVENTS = {f"execution.{s.value}" for s in TERMINAL}
_LIVE = ("queued", "running", "waiting")
BATCH = 1000  # events read per query; a full batch is followed at once by the next


def _feed(request: Request) -> Feed:
    feed: Feed = request.app.state.feed
    return feed


def _kinds(event_type: str) -> list[str]:
    """The messages one stored event becomes: ``step`` for step events, ``complete`` (after
    ``error`` for failures) for the end, and the raw type for the other execution events."""
    if event_type.startswith("step."):
        return ["step"]
    if event_type == "execution.failed":
        return ["error", "complete"]
    if event_type in TERMINAL_EVENTS:
        return ["complete"]
    return [event_type]


def _messages(rows: list[dict[str, Any]]) -> list[tuple[Position, ServerSentEvent]]:
    out = []
    for r in rows:
        data = {
            "seq": r["seq"],
            "type": r["type"],
            **r["data"],
            "created_at": r["created_at"].isoformat(),
        }
        for index, kind in enumerate(_kinds(r["type"])):
            at = Position(r["seq"], index)
            out.append((at, ServerSentEvent(event=kind, id=str(at), data=data)))
    return out


def _after(rows: list[dict[str, Any]]) -> Position:
    """The id of the snapshot that follows a batch: the next free index of its last event."""
    return Position(rows[-1]["seq"], len(_kinds(rows[-1]["type"])))


def _resume_point(last_event_id: str | None, after: int | None) -> Position:
    if last_event_id is not None:
        return sse.parse(last_event_id)
    return Position(after) if after is not None else sse.START


async def _target(scope: Read, execution_id: str) -> dict[str, Any]:
    """Resolved before the response starts: a stream's 200 and headers go out before its
    body runs, so a missing (or another workspace's) execution must fail here, as a 404."""
    return await scope.conveyor.store.get_execution(scope.workspace_id, execution_id)


def _resume_after(
    last_event_id: Annotated[str | None, Header(max_length=sse.MAX_ID_LENGTH)] = None,
    after: Annotated[
        int | None, Query(ge=0, le=sse.MAX_SEQ, description="resume after this event seq")
    ] = None,
) -> Position:
    """Checked before the response starts too (a bad Last-Event-ID is a 400)."""
    return _resume_point(last_event_id, after)


@router.get(
    "/executions/{execution_id}/stream",
    response_class=EventSourceResponse,
    summary="Server-Sent Events of one execution; resumes after Last-Event-ID",
)
async def execution_stream(
    scope: Read,
    request: Request,
    detail: Annotated[dict[str, Any], Depends(_target)],
    cursor: Annotated[Position, Depends(_resume_after)],
) -> AsyncIterator[ServerSentEvent]:
    store = scope.conveyor.store
    full = detail["id"]
    feed = _feed(request)
    yield ServerSentEvent(
        event="connected",
        id=str(cursor),
        data={"execution_id": full, "resume_after": cursor.seq},
    )
    finished = detail["status"] in TERMINAL
    async with feed.watch(full) as wake:
        while True:
            # From the cursor's own event: the messages derived from it may still be due.
            rows = await store.read(events_after, full, cursor.seq - 1, BATCH)
            for at, message in _messages(rows):
                if at > cursor:
                    yield message
            if rows and _after(rows) > cursor:
                cursor = _after(rows)
                row = await store.get_execution(scope.workspace_id, full)
                yield ServerSentEvent(
                    event="progress",
                    id=str(cursor),
                    data={**views.progress(row), "status": row["status"]},
                )
            if len(rows) == BATCH:
                continue
            if finished or any(r["type"] in TERMINAL_EVENTS for r in rows):
                return
            await feed.wait(wake, 15)


def _counts(conn: Connection, workspace_id: str) -> dict[str, int]:
    rows = conn.execute(
        select(executions.c.status, func.count())
        .where(executions.c.workspace_id == workspace_id, executions.c.status.in_(_LIVE))
        .group_by(executions.c.status)
    ).all()
    found = {str(s): int(n) for s, n in rows}
    return {s: found.get(s, 0) for s in _LIVE}


def _workspace_events(
    conn: Connection, workspace_id: str, after_id: int, limit: int = 500
) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            select(events)
            .where(events.c.workspace_id == workspace_id, events.c.id > after_id)
            .order_by(events.c.id)
            .limit(limit)
        )
        .mappings()
        .all()
    ]


def _events_and_counts(
    conn: Connection, workspace_id: str, after_id: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    return _workspace_events(conn, workspace_id, after_id), _counts(conn, workspace_id)


def _latest_id(conn: Connection, workspace_id: str) -> int:
    value = conn.execute(
        select(func.max(events.c.id)).where(events.c.workspace_id == workspace_id)
    ).scalar()
    return int(value or 0)


def _workspace_resume(
    last_event_id: Annotated[str | None, Header(max_length=sse.MAX_ID_LENGTH)] = None,
) -> Position | None:
    return sse.parse(last_event_id) if last_event_id is not None else None


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    summary="Server-Sent Events of a whole workspace: every event, and live counts",
)
async def workspace_stream(
    scope: Read,
    request: Request,
    resume: Annotated[Position | None, Depends(_workspace_resume)],
) -> AsyncIterator[ServerSentEvent]:
    """Ids are the workspace's event ids; ``counts`` after event ``N`` is ``"N.1"``."""
    store, feed = scope.conveyor.store, _feed(request)
    start = resume or Position(await store.read(_latest_id, scope.workspace_id))
    after = start.seq
    counts = await store.read(_counts, scope.workspace_id)
    yield ServerSentEvent(event="connected", id=str(start), data={"counts": counts})
    async with feed.watch(scope.workspace_id) as wake:
        while True:
            # One snapshot: the counts sent with a batch are the counts as of its last event.
            rows, new_counts = await store.read(_events_and_counts, scope.workspace_id, after)
            for r in rows:
                yield ServerSentEvent(
                    event=r["type"],
                    id=str(r["id"]),
                    data={"execution_id": r["execution_id"], "seq": r["seq"], **r["data"]},
                )
            if rows:
                after = rows[-1]["id"]
                if new_counts != counts:
                    counts = new_counts
                    yield ServerSentEvent(event="counts", id=str(Position(after, 1)), data=counts)
            await feed.wait(wake, 15)


@router.websocket("/ws")
async def websocket(socket: WebSocket, scope: Annotated[Scope, Depends(socket_access)]) -> None:
    """Send ``{"subscribe": "<execution id>"}`` or ``{"subscribe": "workspace"}``; receive
    ``{"execution_id", "seq", "type", "data"}`` messages for what you subscribed to."""
    await socket.accept()
    tasks: dict[str, asyncio.Task[None]] = {}
    try:
        while True:
            message = await socket.receive_json()
            target = message.get("subscribe") if isinstance(message, dict) else None
            if not isinstance(target, str) or not target:
                await socket.send_json(
                    {"error": 'send {"subscribe": "<execution id>"} or {"subscribe": "workspace"}'}
                )
                continue
            if target not in tasks:
                tasks[target] = asyncio.create_task(_pump(socket, scope, target))
    except WebSocketDisconnect:
        pass
    finally:
        for task in tasks.values():
            task.cancel()
        for task in tasks.values():
            with contextlib.suppress(asyncio.CancelledError, ConveyorError):
                await task


async def _pump(socket: WebSocket, scope: Scope, target: str) -> None:
    store = scope.conveyor.store
    feed: Feed = socket.app.state.feed
    if target == "workspace":
        after = await store.read(_latest_id, scope.workspace_id)
        key = scope.workspace_id
    else:
        try:
            detail = await store.get_execution(scope.workspace_id, target)
        except ConveyorError as exc:
            await socket.send_json({"error": str(exc), "subscribe": target})
            return
        key, after = detail["id"], 0
    await socket.send_json({"subscribed": target})
    async with feed.watch(key) as wake:
        while True:
            if target == "workspace":
                rows = await store.read(_workspace_events, scope.workspace_id, after)
                after = rows[-1]["id"] if rows else after
            else:
                rows = await store.read(events_after, key, after)
                after = rows[-1]["seq"] if rows else after
            for r in rows:
                await socket.send_json(
                    {
                        "execution_id": r["execution_id"],
                        "seq": r["seq"],
                        "type": r["type"],
                        "data": r["data"],
                    }
                )
            await feed.wait(wake, 15)
