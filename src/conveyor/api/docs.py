"""The interactive API docs: Swagger UI served from the package (static/vendor), so the docs
work without internet. ReDoc is not served (it would need a CDN too)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_UI = "swagger-ui-5.35.0"  # a directory of static/vendor; see VENDORED.md there
STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI, prefix: str) -> None:
    """Serve ``{prefix}/docs`` and ``{prefix}/static/`` (``app`` built with docs_url=None)."""
    static = f"{prefix}/static"
    vendor = f"{static}/vendor/{SWAGGER_UI}"
    app.mount(static, StaticFiles(directory=STATIC_DIR), name="static")
    openapi_url = app.openapi_url or f"{prefix}/openapi.json"

    @app.get(f"{prefix}/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
            swagger_css_url=f"{vendor}/swagger-ui.css",
            swagger_favicon_url=f"{vendor}/favicon-32x32.png",
            # Swagger UI would otherwise send the document to its online validator.
            swagger_ui_parameters={"validatorUrl": None},
        )
