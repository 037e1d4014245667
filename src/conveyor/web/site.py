"""Assembles the dashboard on the API's FastAPI app: static files, security headers, the
HTML error pages and every page router."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.api import problems
from conveyor.errors import ConveyorError
from conveyor.web import pages, signin
from conveyor.web.csp import CSP
from conveyor.web.render import render
from conveyor.web.session import SignInRequired

STATIC_DIR = Path(__file__).parent / "static"
STATIC = "/static"
_API_PREFIXES = ("/api/", "/hooks/", "/healthz", "/readyz", "/metrics")


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith(_API_PREFIXES)


def install(app: FastAPI) -> None:
    """Serve the dashboard at ``/`` beside the API (which keeps ``/api/v1``)."""
    app.mount(STATIC, StaticFiles(directory=STATIC_DIR), name="dashboard-static")
    app.include_router(signin.router)
    app.include_router(pages.router)

    async def error(request: Request, exc: Exception) -> Response:
        """Pages answer errors with an HTML page of the status the API would choose."""
        if isinstance(exc, SignInRequired):
            return RedirectResponse(exc.location, status_code=303)
        if not _is_page(request) or request.scope["type"] != "http":
            return await problems.conveyor_error(request, exc)
        assert isinstance(exc, ConveyorError)
        status, _kind = problems.classify(exc)
        return render(request, "error.html", {"status": status, "message": str(exc)}, status)

    app.add_exception_handler(ConveyorError, error)

    app.add_middleware(SecurityHeaders)


class SecurityHeaders:
    """Security headers on every page (not on API answers), as plain ASGI middleware: it only
    touches the response's start message, so it costs nothing per API request (Starlette's
    ``BaseHTTPMiddleware`` ran every request, API ones included, through extra tasks and
    queues: a measurable share of the webhook benchmark's CPU)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_API_PREFIXES):
            await self.app(scope, receive, send)
            return
        static = path.startswith(STATIC)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # A page may have set its own (the editor allows CodeMirror's styles by nonce).
                headers.setdefault("Content-Security-Policy", CSP)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
