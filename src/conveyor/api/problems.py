"""Errors as ``application/problem+json`` (RFC 9457): the only place HTTP statuses are chosen."""

from __future__ import annotations

from typing import Any, overload

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from conveyor.errors import (
    Conflict,
    ConveyorError,
    DefinitionError,
    Forbidden,
    InputError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    StoreUnavailable,
    TooManyRequests,
    Unauthorized,
)

PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 5
TOO_MANY_REQUESTS = 429  # over a brute-force or flooding limit (api/throttles.py)
MAX_INT = 2**31 - 1  # the largest number any integer parameter may carry
# A WebSocket refused before its handshake is closed with this code, which the server turns
# into an HTTP 403. A denial response (401/404 with a problem body) would say more, but
# uvicorn's websockets-sansio protocol logs each one as "ASGI callable returned without
# completing handshake" (Kludex/uvicorn#3138), so refusals would read as server errors.
SOCKET_REFUSED = 1008  # policy violation
SOCKET_FAILED = 1011  # internal error


class Problem(BaseModel):
    """An error, as RFC 9457 describes (validation errors list each problem)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
    setting: str | None = None  # with 413: the setting that sets the limit
    limit: int | None = None


_DESCRIPTIONS = {
    400: "Bad request",
    401: "No valid credentials",
    403: "Role too low",
    404: "Not found (or in another workspace)",
    409: "Conflict with the state",
    413: "Body, input or definition over its size limit (the problem names the setting)",
    422: "Invalid request, definition, or input (for the workflow's input schema)",
    429: "Too many failed sign-ins or API keys, or deliveries to one webhook (see Retry-After)",
    503: "Database unavailable (retry), or the drafting LLM is not configured or failed",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error responses, with their real media type."""
    schema = Problem.model_json_schema()
    return {
        status: {"description": _DESCRIPTIONS[status], "content": {PROBLEM: {"schema": schema}}}
        for status in statuses
    }


API_ERRORS = documented(400, 401, 403, 404, 409, 413, 422, 429, 503)

_STATUS: list[tuple[type[ConveyorError], int, str]] = [
    (DefinitionError, 422, "invalid-definition"),
    (InvalidInput, 422, "invalid-input"),
    (PayloadTooLarge, 413, "payload-too-large"),
    (InputError, 400, "bad-request"),
    (NotFound, 404, "not-found"),
    (Conflict, 409, "conflict"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (TooManyRequests, TOO_MANY_REQUESTS, "too-many-requests"),
    (StoreUnavailable, 503, "unavailable"),
    (ServiceUnavailable, 503, "service-unavailable"),
]


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"https://conveyor.dev/problems/{kind}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="conveyor"'}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _title(kind: str) -> str:
    return kind.replace("-", " ").capitalize()


def classify(exc: ConveyorError) -> tuple[int, str]:
    """The HTTP status and problem kind of an error (the dashboard's pages use it too)."""
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "internal"


@overload
async def conveyor_error(connection: Request, exc: Exception) -> JSONResponse: ...
@overload
async def conveyor_error(connection: WebSocket, exc: Exception) -> None: ...
async def conveyor_error(connection: HTTPConnection, exc: Exception) -> JSONResponse | None:
    """A problem answer; for a WebSocket, a refusal (or a close once it is open)."""
    assert isinstance(exc, ConveyorError)
    if isinstance(connection, WebSocket):
        status, kind = classify(exc)
        await connection.close(SOCKET_REFUSED if status < 500 else SOCKET_FAILED, reason=kind)
        return None
    return response_for(exc)


def response_for(exc: ConveyorError) -> JSONResponse:
    """The problem+json answer to ``exc`` (also used by middleware, outside any route)."""
    status, kind = classify(exc)
    if kind == "internal":
        return problem(500, "internal", "Internal error", str(exc))
    response = problem(status, kind, _title(kind), str(exc), **_extra(exc))
    response.headers.update(retry_headers(exc))
    return response


def problem_body(exc: ConveyorError) -> dict[str, Any]:
    """The problem+json body of ``exc`` on its own (one refused item of a batch)."""
    status, kind = classify(exc)
    return {
        "type": f"https://conveyor.dev/problems/{kind}",
        "title": _title(kind),
        "status": status,
        "detail": str(exc),
        **_extra(exc),
    }


def _extra(exc: ConveyorError) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if isinstance(exc, DefinitionError | InvalidInput):
        extra["errors"] = [p.as_dict() for p in exc.problems]
    if isinstance(exc, PayloadTooLarge):
        extra.update(setting=exc.setting, limit=exc.limit)
    return extra


def retry_headers(exc: ConveyorError) -> dict[str, str]:
    """``Retry-After`` for a refusal that names when to come back (pages send it too)."""
    if isinstance(exc, TooManyRequests):
        return {"Retry-After": str(int(exc.retry_after.total_seconds()))}
    return {}


# -- webhooks (/hooks/{token}) ----------------------------------------------------------------
HOOK_ACCEPTED = 202  # async mode, and a sync response that reached its timeout
HOOK_DUPLICATE = 200  # a redelivery: the first execution, marked duplicate
HOOK_STREAM = 200  # stream mode: the execution's events follow


def method_not_allowed(allowed: list[str]) -> JSONResponse:
    response = problem(
        405,
        "method-not-allowed",
        "Method not allowed",
        f"this webhook accepts {', '.join(allowed)}",
    )
    response.headers["Allow"] = ", ".join(allowed)
    return response


def execution_failed(execution_id: str, status: str, error: Any, **urls: str) -> JSONResponse:
    """A sync webhook whose execution did not succeed: a 500 (the sender did nothing wrong;
    the workflow failed), naming the execution so it can be inspected or retried."""
    message = error.get("message") if isinstance(error, dict) else error
    detail = f"the execution {status}" + (f": {message}" if message else "")
    return problem(
        500, "execution-failed", "Execution failed", detail, execution_id=execution_id, **urls
    )


def delivery_outcome(status: int) -> str:
    """How a webhook delivery answered with ``status`` is recorded."""
    if status == 401:
        return "refused"
    return "failed" if status >= 500 else "rejected"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"path": _path(e["loc"]), "message": _message(e)} for e in exc.errors()]
    detail = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
    return problem(422, "invalid-request", "Invalid request", detail, errors=errors)


def _path(loc: tuple[Any, ...]) -> str:
    """``body.input``: a body told apart by its shape (a tag starting with "@") names the
    fields of the shape that was sent, without the tag."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("@")))


def _message(error: dict[str, Any]) -> str:
    """Pydantic's message; for a body that is not JSON, also why (``ctx.error``)."""
    reason = (error.get("ctx") or {}).get("error") if error.get("type") == "json_invalid" else None
    return f"{error['msg']}: {reason}" if reason else str(error["msg"])


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = {401: "unauthorized", 404: "not-found", 405: "method-not-allowed"}.get(
        exc.status_code, "http-error"
    )
    response = problem(exc.status_code, kind, _title(kind), str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    """A lost or refused database connection is a 503 with Retry-After, never a 500; a
    value the database cannot hold (NUL in text, out-of-range numbers) is the caller's 400."""
    assert isinstance(exc, DBAPIError)
    if isinstance(exc, DataError):
        message = str(exc.orig).strip().splitlines()[0]
        return problem(
            400, "bad-request", "Bad request", f"the database refused a value: {message}"
        )
    if exc.connection_invalidated or "connection" in str(exc.orig).lower():
        return problem(
            503, "unavailable", "Unavailable", "the database is unreachable; retry shortly"
        )
    raise exc


def install(app: FastAPI) -> None:
    app.add_exception_handler(ConveyorError, conveyor_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(DBAPIError, database_error)
