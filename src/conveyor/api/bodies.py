"""JSON request bodies as Conveyor can store them, on every API route: numbers a double
holds (no NaN, no infinities such as 1e400, no integers of thousands of digits), no NUL
character in text (PostgreSQL cannot hold one, so SQLite refuses it too), nesting within
the interpreter's stack. A refusal is a JSON decode error, which FastAPI answers as a 422
naming why (see ``problems.validation_error``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from conveyor.engine.definition import TooLarge, load_json


class JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                # utf-8-sig: a leading byte order mark is allowed, as json.loads allowed it
                self._json = load_json(body.decode("utf-8-sig"))
            except UnicodeDecodeError as exc:
                raise json.JSONDecodeError(f"not UTF-8 ({exc.reason})", "", exc.start) from None
            except json.JSONDecodeError:
                raise
            except (ValueError, TooLarge) as exc:
                raise json.JSONDecodeError(str(exc), "", 0) from None
        return self._json


class JsonRoute(APIRoute):
    """An API route that reads its JSON body with :class:`JsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return strict
