"""The app's route table, flattened: FastAPI keeps an included router as one entry (its
routes inside, without the prefix), so a plain walk over ``app.routes`` would miss them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi.routing import APIRoute


def api_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every APIRoute, included routers and their prefixes too."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from api_routes(inner.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute):
            yield prefix + route.path, route
