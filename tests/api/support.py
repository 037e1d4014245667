"""Helpers of the API tier: an ASGI transport that really streams (httpx's ASGITransport
buffers the whole body, so an endless SSE stream would never answer), an in-process
WebSocket client, an SSE parser, and waiting on conditions with deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx

API = "/api/v1"
T = TypeVar("T")
Message = dict[str, Any]
ASGIApp = Callable[..., Awaitable[None]]


class _Body(httpx.AsyncByteStream):
    """The response body as the app sends it; closing it disconnects the client."""

    def __init__(
        self, chunks: asyncio.Queue[bytes | None], task: asyncio.Task[None], gone: asyncio.Event
    ) -> None:
        self.chunks = chunks
        self.task = task
        self.gone = gone

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self.chunks.get()
            if chunk is None:
                break
            if chunk:
                yield chunk

    async def aclose(self) -> None:
        self.gone.set()
        if not self.task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.task), 2)
            except TimeoutError:
                self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


class StreamingTransport(httpx.AsyncBaseTransport):
    """Runs the ASGI app per request and hands back the response as soon as it starts, its
    body streaming while the app still sends it. An app exception before the response
    starts propagates; one after it ends the body (as a server closing the connection
    would) and is kept in ``errors`` for the fixture to report."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.errors: list[tuple[str, BaseException]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": request.url.scheme,
            "path": unquote(request.url.path),
            "raw_path": request.url.raw_path.split(b"?", 1)[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port or 80),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
        }
        gone = asyncio.Event()
        request_sent = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        loop = asyncio.get_running_loop()
        started: asyncio.Future[Message] = loop.create_future()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set_result(message)
            elif message["type"] == "http.response.body":
                await chunks.put(message.get("body", b""))
                if not message.get("more_body", False):
                    await chunks.put(None)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except Exception as exc:
                if not started.done():
                    raise
                self.errors.append((f"{request.method} {request.url}", exc))
            finally:
                await chunks.put(None)

        task = asyncio.create_task(run())
        pending: list[asyncio.Future[Any]] = [started, task]
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            task.result()  # raises what the app raised
            raise AssertionError("the app returned without starting a response")
        start = started.result()
        return httpx.Response(
            start["status"], headers=start.get("headers", []), stream=_Body(chunks, task, gone)
        )


class WebSocketRejected(Exception):
    def __init__(self, status: int, body: bytes = b"", reason: str = "") -> None:
        super().__init__(f"websocket rejected with {status} {reason}: {body[:200]!r}")
        self.status = status
        self.body = body
        self.reason = reason


class WebSocket:
    """A WebSocket client talking to the ASGI app in this event loop."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        headers: dict[str, str] | None = None,
        query: bytes = b"",
    ) -> None:
        self.app = app
        self.path = path
        self.headers = headers or {}
        self.query = query
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WebSocket:
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "ws",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": self.query,
            "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers.items()],
            "server": ("test", 80),
            "client": ("127.0.0.1", 50001),
            "root_path": "",
            "subprotocols": [],
            "extensions": {"websocket.http.response": {}},
        }
        await self.inbox.put({"type": "websocket.connect"})

        async def run() -> None:
            await self.app(scope, self.inbox.get, self.outbox.put)

        self.task = asyncio.create_task(run())
        first = await self._next(10)
        if first["type"] == "websocket.accept":
            return self
        await self._finish()
        if first["type"] == "websocket.close":
            raise WebSocketRejected(int(first.get("code", 1000)), reason=first.get("reason", ""))
        if first["type"] == "websocket.http.response.start":
            body = b""
            while not self.outbox.empty():
                body += self.outbox.get_nowait().get("body", b"")
            raise WebSocketRejected(int(first["status"]), body)
        raise AssertionError(f"unexpected first message {first}")

    async def __aexit__(self, *exc: object) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        await self._finish()

    async def _finish(self) -> None:
        assert self.task is not None
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        except TimeoutError:
            self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _next(self, within: float) -> Message:
        assert self.task is not None
        getter = asyncio.ensure_future(self.outbox.get())
        try:
            done, _ = await asyncio.wait(
                {getter, self.task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if self.task in done:
            self.task.result()
            raise AssertionError("the websocket app ended without sending anything")
        raise AssertionError(f"nothing received on the websocket within {within}s")

    async def send_json(self, data: Any) -> None:
        await self.inbox.put({"type": "websocket.receive", "text": json.dumps(data)})

    async def receive_json(self, within: float = 10) -> Any:
        message = await self._next(within)
        assert message["type"] == "websocket.send", message
        return json.loads(message.get("text") or message["bytes"])


@dataclass
class Event:
    """One Server-Sent Event."""

    event: str
    id: str | None
    data: Any


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """Parse a text/event-stream body (comments such as keep-alives are skipped)."""
    event: str | None = None
    ident: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if event is not None or data:
                payload = json.loads("\n".join(data)) if data else None
                yield Event(event or "message", ident, payload)
            event, ident, data = None, None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "id":
            ident = value
        elif name == "data":
            data.append(value)


class Waiter:
    """Waits for conditions with a deadline: it re-checks whenever events are committed in
    this process, and every ``tick`` seconds for changes made without in-process events."""

    def __init__(self, tick: float = 0.1) -> None:
        self.tick = tick
        self.condition = asyncio.Condition()

    def on_events(self, records: list[Any]) -> None:
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self.condition:
            self.condition.notify_all()

    async def until(
        self, check: Callable[[], Awaitable[T | None]], what: str, within: float = 10
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            last = await check()
            if last:
                return last
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"timed out after {within}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self.tick, left)), self.condition:
                    await self.condition.wait()


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem answer with ``status`` and return its body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0] == "application/problem+json", (
        response.headers.get("content-type"),
        response.text,
    )
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def transform(name: str, output: Any = "{{ input }}") -> dict[str, Any]:
    """A one-node workflow that succeeds at once."""
    return {"name": name, "nodes": [{"id": "t", "type": "transform", "config": {"output": output}}]}


def failing(name: str, message: str = "failed on purpose") -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            {"id": "first", "type": "transform", "config": {"output": "{{ input }}"}},
            {"id": "boom", "type": "fail", "needs": ["first"], "config": {"message": message}},
        ],
    }


def waiting(name: str, event: str = "go") -> dict[str, Any]:
    """A workflow that waits for signal ``event`` (for an hour) before finishing."""
    return {
        "name": name,
        "nodes": [
            {"id": "before", "type": "transform", "config": {"output": "{{ input }}"}},
            {
                "id": "approve",
                "type": "wait_for_event",
                "needs": ["before"],
                "config": {"event": event, "timeout": "1h"},
            },
            {
                "id": "after",
                "type": "transform",
                "needs": ["approve"],
                "config": {"output": "by {{ nodes.approve.output.by }}"},
            },
        ],
    }


def gated(name: str, gate: str) -> dict[str, Any]:
    """A workflow whose step ``hold`` keeps running until the test opens ``gate``."""
    return {
        "name": name,
        "nodes": [
            {"id": "hold", "type": "test.gate", "config": {"gate": gate}},
            {"id": "done", "type": "transform", "needs": ["hold"], "config": {"output": 1}},
        ],
    }


class SSEStream:
    """An open Server-Sent Events stream read one event at a time, each with a deadline."""

    def __init__(
        self, client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
    ) -> None:
        self.client = client
        self.url = url
        self.headers = headers
        self.response: httpx.Response
        self.seen: list[Event] = []
        self._stack = contextlib.AsyncExitStack()
        self._events: AsyncIterator[Event]

    async def __aenter__(self) -> SSEStream:
        self.response = await self._stack.enter_async_context(
            self.client.stream("GET", self.url, headers=self.headers)
        )
        assert self.response.status_code == 200, (
            self.response.status_code,
            await self.response.aread(),
        )
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self._events = sse_events(self.response).__aiter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def next(self, within: float = 10) -> Event | None:
        """The next event, or None when the stream ended."""
        try:
            async with asyncio.timeout(within):
                event = await anext(self._events)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise AssertionError(
                f"no event on {self.url} within {within}s after "
                f"{[(e.event, e.id) for e in self.seen]}"
            ) from None
        self.seen.append(event)
        return event

    async def until(self, done: Callable[[Event], bool], within: float = 10) -> list[Event]:
        """Events up to and including the first for which ``done`` holds."""
        got: list[Event] = []
        while True:
            event = await self.next(within)
            if event is None:
                raise AssertionError(
                    f"{self.url} ended first; got {[(e.event, e.id) for e in got]}"
                )
            got.append(event)
            if done(event):
                return got

    async def rest(self, within: float = 10) -> list[Event]:
        """Every event until the server ends the stream."""
        got: list[Event] = []
        while (event := await self.next(within)) is not None:
            got.append(event)
        return got


@contextlib.contextmanager
def commit_between_statements(
    engine: Any, when: Callable[[str], bool], action: Callable[[], None]
) -> Any:
    """Run ``action`` (a commit on another connection) once, right before the first
    statement for which ``when(sql)`` holds: a concurrent commit at the worst moment."""
    from sqlalchemy import event

    fired: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not fired and when(statement):
            fired.append(statement)
            action()

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield fired
    finally:
        event.remove(engine, "before_cursor_execute", before)


def live_count_query(sql: str) -> bool:
    """The statement in which statistics count live (queued/running/waiting) executions:
    on its own, or together with the finished counters in one statement."""
    flat = " ".join(sql.split())
    alone = flat.startswith("SELECT executions.status, count(*)") and "status IN (" in flat
    with_counters = "executions_succeeded" in flat and "count(*)" in flat
    return alone or with_counters
