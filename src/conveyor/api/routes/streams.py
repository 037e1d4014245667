"""Live streams: Server-Sent Events per execution and per workspace, and a WebSocket.

A stream subscribes to the process's feed (``conveyor.live``), catches up from the events
table up to the point where its subscription starts, then sends what the feed hands it:
one read of the database per batch of events for every stream together, never one per
stream. A client that reconnects with ``Last-Event-ID`` (any id a stream sent; see
``api/sse.py``) receives every later message exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect

from conveyor import live
from conveyor.api import sse, views
from conveyor.api.auth import Scope, read_access, socket_access
from conveyor.api.bodies import JsonRoute
from conveyor.api.sse import PING, PING_SECONDS, EventStream, Position
from conveyor.engine.state import TERMINAL
from conveyor.errors import ConveyorError, InputError
from conveyor.live import Delivery, Feed, Subscription
from conveyor.store import Store
from conveyor.store import feed as reads

router = APIRouter(prefix="/workspaces/{ws}", tags=["streams"], route_class=JsonRoute)
Read = Annotated[Scope, Depends(read_access)]
TERMINAL_EVENTS = {f"execution.{s.value}" for s in TERMINAL}
BATCH = 1000  # events read per catch-up query; a full batch is followed at once by the next
NEVER = sse.MAX_SEQ  # an id bound that every event is under
# Seconds between two writes to one workspace stream under load: a tab's lists, counts and
# "N running" move twice a second at most, and a viewer costs the server a write per
# pause, not one per batch of events. (An execution's stream is not paced: the graph and
# the Run button show each step as it happens.)
WORKSPACE_SPACING = 0.5
_SEND_WAIT = 0.005  # a write that took longer waited for its client: its CPU is not counted


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


def _messages(rows: list[dict[str, Any]]) -> list[tuple[Position, bytes]]:
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
            out.append((at, sse.message(kind, at, data)))
    return out


def _after(rows: list[dict[str, Any]]) -> Position:
    """The id of the snapshot that follows a batch: the next free index of its last event."""
    return Position(rows[-1]["seq"], len(_kinds(rows[-1]["type"])))


class _Rendered:
    """An execution's batch of events as messages, made once and shared by every stream
    that sends it (``Delivery.memo``)."""

    def __init__(self, rows: list[dict[str, Any]], progress: dict[str, Any]) -> None:
        self.messages = _messages(rows)
        self.joined = b"".join(m for _, m in self.messages)
        self.after = _after(rows)
        snapshot = {**views.progress(progress), "status": progress["status"]}
        self.progress = sse.message("progress", self.after, snapshot)
        self.terminal = any(r["type"] in TERMINAL_EVENTS for r in rows)


class _ExecutionView:
    """What one execution stream has sent: it sends only what lies past its cursor."""

    def __init__(self, cursor: Position) -> None:
        self.cursor = cursor
        self.done = False

    def send(self, rendered: _Rendered) -> bytes:
        if not rendered.messages or rendered.messages[0][0] > self.cursor:
            out = rendered.joined
        else:
            out = b"".join(m for at, m in rendered.messages if at > self.cursor)
        if rendered.after > self.cursor:
            self.cursor = rendered.after
            out += rendered.progress
        self.done = self.done or rendered.terminal
        return out

    def live(self, delivery: Delivery) -> bytes:
        if delivery.live is not None:
            return sse.live_message(delivery.live.kind, delivery.live.data)
        rendered = delivery.memo.get("sse")
        if rendered is None:
            rendered = delivery.memo["sse"] = _Rendered(delivery.rows, delivery.snapshot)
        return self.send(rendered)

    async def catch_up(self, store: Store, execution_id: str, upto: int) -> AsyncIterator[bytes]:
        """Every stored event up to id ``upto`` past the cursor, from the database."""
        while not self.done:
            # From the cursor's own event: the messages derived from it may still be due.
            rows, progress = await store.read(
                reads.execution_events, execution_id, self.cursor.seq - 1, upto, BATCH
            )
            if rows:
                yield self.send(_Rendered(rows, progress))
            if len(rows) < BATCH:
                return


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
    response_class=EventStream,
    responses=sse.DOCUMENTED,
    summary="Server-Sent Events of one execution; resumes after Last-Event-ID",
)
async def execution_stream(
    scope: Read,
    request: Request,
    detail: Annotated[dict[str, Any], Depends(_target)],
    cursor: Annotated[Position, Depends(_resume_after)],
) -> EventStream:
    return EventStream(execution_messages(scope.conveyor.store, _feed(request), detail, cursor))


async def execution_messages(
    store: Store, feed: Feed, detail: dict[str, Any], cursor: Position
) -> AsyncIterator[bytes]:
    full = detail["id"]
    data = {"execution_id": full, "resume_after": cursor.seq}
    yield sse.message("connected", cursor, data)
    view = _ExecutionView(cursor)
    if detail["status"] in TERMINAL:  # everything is stored already
        async for chunk in view.catch_up(store, full, NEVER):
            yield chunk
        return
    async with feed.subscribe(live.execution(full)) as subscription:
        while True:
            assert subscription.start is not None
            async for chunk in view.catch_up(store, full, subscription.start):
                yield chunk
            async for chunk in _follow(subscription, view.live, lambda: view.done):
                yield chunk
            if view.done:
                return
            await feed.restart(subscription)


async def _follow(
    subscription: Subscription,
    send: Callable[[Delivery], bytes],
    done: Callable[[], bool],
    spacing: float = 0.0,
) -> AsyncIterator[bytes]:
    """What the feed hands ``subscription``, as ``send`` renders it, with a keep-alive
    when there was nothing for a while; until ``done()`` or the subscription is lost.

    Whatever waits is sent in one write, and with ``spacing`` at least that many seconds
    pass between two writes: the first after a quiet spell goes at once, what comes during
    the pause goes together at its end. A write costs the server about the same whatever
    it carries (bench/streams.py), so fewer writes bound what each viewer costs under
    load."""
    delivered = subscription.delivered
    loop = asyncio.get_running_loop()
    last = -spacing
    while not done() and not subscription.lost:
        pause = last + spacing - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)
        deliveries = await subscription.next(PING_SECONDS)
        if deliveries is None:
            yield PING
            continue
        began = time.thread_time()
        chunks = []
        for delivery in deliveries:
            chunk = send(delivery)
            if chunk:
                chunks.append(chunk)
            if done():
                break
        spent = time.thread_time() - began
        if chunks:
            out = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            last = loop.time()
            delivered.writes += 1
            delivered.bytes += len(out)
            wrote, waited = time.thread_time(), time.perf_counter()
            yield out  # the response writes it before the generator resumes ...
            if time.perf_counter() - waited < _SEND_WAIT:  # ... unless a slow client made
                spent += time.thread_time() - wrote  # it wait while other tasks ran
        delivered.cpu_seconds += spent


class _WorkspaceView:
    """What one workspace stream has sent: events after ``after`` (those of the ``types``
    it asked for; None: every event) and the last counts."""

    def __init__(
        self, after: int, counts: dict[str, int], types: tuple[str, ...] | None = None
    ) -> None:
        self.after = after
        self.counts = counts
        self.types = types
        self._memo_key = ("sse", types)  # streams asking for the same types share a render

    def send(self, rows: list[dict[str, Any]], counts: dict[str, int], memo: Any = None) -> bytes:
        last = rows[-1]["id"]
        if last <= self.after:  # all sent already (a catch-up that met the live batches)
            return b""
        rendered = memo.get(self._memo_key) if memo is not None else None
        if rendered is None:
            rendered = _workspace_messages(rows, self.types)
            if memo is not None:
                memo[self._memo_key] = rendered
        messages, joined = rendered
        if not messages or messages[0][0] > self.after:
            out = joined
        else:
            out = b"".join(m for ident, m in messages if ident > self.after)
        self.after = last
        if counts and counts != self.counts:
            # One snapshot: the counts sent with a batch are the counts as of its events.
            self.counts = counts
            out += sse.message("counts", Position(last, 1), counts)
        return out

    def live(self, delivery: Delivery) -> bytes:
        return self.send(delivery.rows, delivery.snapshot, delivery.memo)

    async def catch_up(self, store: Store, workspace_id: str, upto: int) -> AsyncIterator[bytes]:
        while self.after < upto:
            rows, counts = await store.read(
                reads.workspace_events, workspace_id, self.after, upto, BATCH
            )
            if rows:
                yield self.send(rows, counts)
            if len(rows) < BATCH:
                return


def _workspace_messages(
    rows: list[dict[str, Any]], types: tuple[str, ...] | None
) -> tuple[list[tuple[int, bytes]], bytes]:
    messages = []
    for r in rows:
        if types is not None and not r["type"].startswith(types):
            continue
        data = {"execution_id": r["execution_id"], "seq": r["seq"], **r["data"]}
        messages.append((r["id"], sse.message(r["type"], r["id"], data)))
    return messages, b"".join(m for _, m in messages)


MAX_TYPES = 20
_TYPE_PREFIX = re.compile(r"[a-z_]+(\.[a-z_]*)*")


def _event_types(
    types: Annotated[
        str | None,
        Query(
            max_length=500,
            description="only events whose type starts with one of these comma-separated "
            "prefixes (`execution.,notification.` leaves out step events); counts are "
            "always sent. Empty: the counts alone. Absent: every event",
            examples=["execution.,notification.,task."],
        ),
    ] = None,
) -> tuple[str, ...] | None:
    if types is None:
        return None
    found = tuple(sorted({t.strip() for t in types.split(",") if t.strip()}))
    if len(found) > MAX_TYPES or not all(_TYPE_PREFIX.fullmatch(t) for t in found):
        raise InputError(
            f"types: give up to {MAX_TYPES} comma-separated event type prefixes such as "
            "execution. or step.succeeded (lower-case letters, _ and dots)"
        )
    return found  # empty: no events, the counts alone


def _workspace_resume(
    last_event_id: Annotated[str | None, Header(max_length=sse.MAX_ID_LENGTH)] = None,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=sse.MAX_SEQ,
            description="start after this event id (a page's cursor: what it already shows); "
            "Last-Event-ID, sent when EventSource reconnects, wins",
        ),
    ] = None,
) -> Position | None:
    if last_event_id is None and after is None:
        return None
    return _resume_point(last_event_id, after)


@router.get(
    "/stream",
    response_class=EventStream,
    responses=sse.DOCUMENTED,
    summary="Server-Sent Events of a whole workspace: every event, and live counts",
)
async def workspace_stream(
    scope: Read,
    request: Request,
    resume: Annotated[Position | None, Depends(_workspace_resume)],
    types: Annotated[tuple[str, ...] | None, Depends(_event_types)],
) -> EventStream:
    """Ids are event ids; ``counts`` after event ``N`` is ``"N.1"``. A page that shows
    only some events asks for those (``types``): the rest are never sent to it."""
    return EventStream(
        _workspace_stream(scope.conveyor.store, _feed(request), scope.workspace_id, resume, types)
    )


async def _workspace_stream(
    store: Store,
    feed: Feed,
    workspace_id: str,
    resume: Position | None,
    types: tuple[str, ...] | None = None,
    spacing: float = WORKSPACE_SPACING,
) -> AsyncIterator[bytes]:
    async with feed.subscribe(live.workspace(workspace_id)) as subscription:
        assert subscription.start is not None
        start = resume or Position(subscription.start)
        counts = await store.read(reads.counts, [workspace_id])
        yield sse.message("connected", start, {"counts": counts[workspace_id]})
        view = _WorkspaceView(start.seq, counts[workspace_id], types)
        while True:
            assert subscription.start is not None
            async for chunk in view.catch_up(store, workspace_id, subscription.start):
                yield chunk
            async for chunk in _follow(subscription, view.live, lambda: False, spacing):
                yield chunk
            await feed.restart(subscription)


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


def _socket_texts(delivery: Delivery) -> list[tuple[dict[str, Any], str]]:
    texts = delivery.memo.get("ws")
    if texts is None:
        texts = delivery.memo["ws"] = [(r, _socket_text(r)) for r in delivery.rows]
    return list(texts)


def _socket_text(r: dict[str, Any]) -> str:
    """As ``WebSocket.send_json`` writes it."""
    message = {"execution_id": r["execution_id"], "seq": r["seq"], "type": r["type"]}
    return json.dumps({**message, "data": r["data"]}, separators=(",", ":"), ensure_ascii=False)


class _SocketView:
    """What one WebSocket subscription has sent: events up to ``after_id`` (and, for an
    execution, up to its ``after_seq``)."""

    def __init__(self, socket: WebSocket, key: live.Key, after_id: int) -> None:
        self.socket = socket
        self.key = key
        self.after_id = after_id
        self.after_seq = 0

    async def catch_up(self, store: Store, upto: int) -> None:
        while True:
            if self.key[0] == "workspace":
                query: Any = reads.workspace_events
                after = self.after_id
            else:
                query, after = reads.execution_events, self.after_seq
            rows, _ = await store.read(query, self.key[1], after, upto, BATCH)
            for r in rows:
                await self.socket.send_text(_socket_text(r))
                self.after_id, self.after_seq = r["id"], r["seq"]
            if len(rows) < BATCH:
                self.after_id = max(self.after_id, upto)
                return

    async def follow(self, subscription: Subscription) -> None:
        while not subscription.lost:
            for delivery in await subscription.next(PING_SECONDS) or []:
                if delivery.live is not None:
                    message = delivery.live
                    await self.socket.send_json(
                        {
                            "execution_id": message.execution_id,
                            "type": message.kind,
                            "data": message.data,
                            "live": True,
                        }
                    )
                    continue
                for r, text in _socket_texts(delivery):
                    if r["id"] > self.after_id:
                        await self.socket.send_text(text)
                        self.after_id, self.after_seq = r["id"], r["seq"]


async def _pump(socket: WebSocket, scope: Scope, target: str) -> None:
    """Workspace: every event from the moment of subscribing. Execution: all its events."""
    store = scope.conveyor.store
    feed: Feed = socket.app.state.feed
    if target == "workspace":
        key = live.workspace(scope.workspace_id)
    else:
        try:
            detail = await store.get_execution(scope.workspace_id, target)
        except ConveyorError as exc:
            await socket.send_json({"error": str(exc), "subscribe": target})
            return
        key = live.execution(detail["id"])
    async with feed.subscribe(key) as subscription:
        await socket.send_json({"subscribed": target})
        assert subscription.start is not None
        view = _SocketView(socket, key, subscription.start if target == "workspace" else 0)
        while True:
            assert subscription.start is not None
            await view.catch_up(store, subscription.start)
            await view.follow(subscription)
            await feed.restart(subscription)
