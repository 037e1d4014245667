"""Dotted paths into item data (``customer.address.city``): reading and setting fields."""

from __future__ import annotations

from typing import Any

MISSING: Any = object()


def get_path(data: Any, path: str) -> Any:
    """The value at ``path`` (dotted; a number picks a list element), or ``MISSING``. The
    empty path is the data itself."""
    if not path:
        return data
    current = data
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(current) <= index < len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` (dotted) in ``data``, making the objects on the way. Raises ValueError
    when a part on the way holds something other than an object."""
    parts = path.split(".")
    current = data
    for depth, part in enumerate(parts[:-1]):
        found = current.get(part, MISSING)
        if found is MISSING or found is None:
            found = current[part] = {}
        elif not isinstance(found, dict):
            where = ".".join(parts[: depth + 1])
            raise ValueError(f"'{where}' holds {type_name(found)}, not an object")
        current = found
    current[parts[-1]] = value


def type_name(value: Any) -> str:
    """A value's JSON type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
