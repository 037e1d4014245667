"""Query parameters: a request may carry only those its route declares. A misspelt or
unsupported parameter (``?ofset=``, ``?page=``) would otherwise be ignored in silence, and
the caller would get an answer to a question it did not ask."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.dependencies.models import Dependant
from starlette.requests import HTTPConnection

from conveyor.errors import InputError


def _names(dependant: Dependant) -> Iterator[str]:
    """The query parameter names of a route, its dependencies' included (a walk of a few
    nodes, cheaper than any cache keyed by the unhashable route)."""
    yield from (field.alias for field in dependant.query_params)
    for sub in dependant.dependencies:
        yield from _names(sub)


def known_query(connection: HTTPConnection) -> None:
    """Dependency of every /api/v1 route (HTTP and WebSocket): a 400 naming the unknown."""
    dependant = getattr(connection.scope.get("route"), "dependant", None)
    if not isinstance(dependant, Dependant):
        return
    taken = set(_names(dependant))
    unknown = sorted(set(connection.query_params) - taken)
    if unknown:
        noun = "parameter" if len(unknown) == 1 else "parameters"
        raise InputError(
            f"unknown query {noun}: {', '.join(unknown)}; "
            f"this endpoint takes: {', '.join(sorted(taken)) or 'no query parameters'}"
        )
