"""Assembles the dashboard on the API's FastAPI app: static files, security headers, the
HTML error pages and every page router."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

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

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if _is_page(request):
            # A page may have set its own (the editor allows CodeMirror's styles by nonce).
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            if not request.url.path.startswith(STATIC):
                response.headers.setdefault("Cache-Control", "no-store")
        return response
