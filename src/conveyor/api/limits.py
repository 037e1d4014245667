"""The request body limit, as ASGI middleware: counts the bytes as they arrive, so a body
streamed without a Content-Length is stopped as surely as one that announces its size."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api import problems
from conveyor.engine.limits import too_large
from conveyor.errors import PayloadTooLarge

SETTING = "CONVEYOR_MAX_REQUEST_BYTES"


class BodyLimit:
    """Answer 413 problem+json once a request body passes ``limit`` bytes (0: no limit)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.limit:
            await self.app(scope, receive, send)
            return
        announced = _content_length(scope)
        if announced is not None and announced > self.limit:
            await self._refuse(scope, receive, send, announced)
            return
        await _Counted(self, scope, receive, send).run()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        message = too_large("the request body", size, self.limit, SETTING)
        exc = PayloadTooLarge(message, setting=SETTING, limit=self.limit)
        await problems.response_for(exc)(scope, receive, send)


class _Counted:
    """One request whose body is counted. Once it is over the limit, whatever the app makes
    of the error it was handed (FastAPI turns errors while reading a body into a 400), the
    answer is the 413."""

    def __init__(self, limit: BodyLimit, scope: Scope, receive: Receive, send: Send) -> None:
        self.limit = limit
        self.scope = scope
        self.receive = receive
        self.send = send
        self.size = 0
        self.over = False
        self.started = False

    async def run(self) -> None:
        try:
            await self.limit.app(self.scope, self._receive, self._send)
        except PayloadTooLarge:
            if self.started:
                raise
        if self.over and not self.started:
            self.started = True
            await self.limit._refuse(self.scope, self.receive, self.send, self.size)

    async def _receive(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit.limit:
                self.over = True
                raise PayloadTooLarge(
                    too_large("the request body", self.size, self.limit.limit, SETTING),
                    setting=SETTING,
                    limit=self.limit.limit,
                )
        return message

    async def _send(self, message: Message) -> None:
        if self.over and not self.started:
            return  # the app's answer to the error is replaced by the 413 (see run)
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
