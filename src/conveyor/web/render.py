"""Rendering pages: one Jinja2 environment (autoescaped), the filters the templates share,
and the context every page gets (who, which workspace, the CSRF token)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from conveyor import __version__
from conveyor.web.session import CSRF_FIELD, csrf_for

EMPTY = "\u2013"  # an en dash: no value
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def duration(ms: float | None) -> str:
    """``850 ms``, ``2.4 s``, ``3 min 5 s``, ``2 h 10 min``."""
    if ms is None:
        return EMPTY
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def timestamp(value: datetime | str | None) -> Markup:
    """A ``<time>`` in UTC; ``times.js`` shows it local, UTC or relative, as chosen."""
    if value is None:
        return Markup(EMPTY)  # noqa: S704 (a constant)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    iso = value.isoformat()
    return Markup('<time datetime="{}">{}</time>').format(
        iso, value.strftime("%Y-%m-%d %H:%M:%S UTC")
    )


def percent(rate: float | None) -> str:
    return EMPTY if rate is None else f"{rate * 100:.0f} %"


def as_json(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` island (never executed; ``</`` and
    friends escaped so the data cannot close the element)."""
    text = orjson.dumps(value, default=str).decode()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 (escaped above)


TEMPLATES.env.filters.update(duration=duration, timestamp=timestamp, percent=percent)
TEMPLATES.env.filters["json"] = as_json
TEMPLATES.env.globals.update(version=__version__, csrf_field=CSRF_FIELD)


def render(
    request: Request, template: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    context = {"csrf": csrf_for(request), **context}
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status)
