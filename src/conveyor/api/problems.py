"""Errors as ``application/problem+json`` (RFC 9457): the only place HTTP statuses are chosen."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from conveyor.errors import (
    Conflict,
    ConveyorError,
    DefinitionError,
    Forbidden,
    InputError,
    NotFound,
    StoreUnavailable,
    Unauthorized,
)

PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 5

_STATUS: list[tuple[type[ConveyorError], int, str]] = [
    (DefinitionError, 422, "invalid-definition"),
    (InputError, 400, "bad-request"),
    (NotFound, 404, "not-found"),
    (Conflict, 409, "conflict"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (StoreUnavailable, 503, "unavailable"),
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


async def conveyor_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConveyorError)
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            extra: dict[str, Any] = {}
            if isinstance(exc, DefinitionError):
                extra["errors"] = [p.as_dict() for p in exc.problems]
            return problem(status, kind, _title(kind), str(exc), **extra)
    return problem(500, "internal", "Internal error", str(exc))


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"path": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    detail = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
    return problem(422, "invalid-request", "Invalid request", detail, errors=errors)


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
    """A lost or refused database connection is a 503 with Retry-After, never a 500."""
    assert isinstance(exc, DBAPIError)
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
