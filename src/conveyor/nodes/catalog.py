"""The palette: each registered node type as an editor sees it (title, category, icon, the
JSON Schema of its config with template fields marked, its branches)."""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from conveyor.durations import DurationSchema
from conveyor.nodes.base import FunctionNode, NodeType
from conveyor.nodes.registry import Registry

TEMPLATE = "x-template"


def catalog(registry: Registry) -> list[dict[str, Any]]:
    """Every registered node type, by name."""
    found = (registry.get(name) for name in registry.names())
    return [describe(node_type) for node_type in found if node_type is not None]


def describe(node_type: NodeType) -> dict[str, Any]:
    fixed = node_type.branches({})
    return {
        "name": node_type.name,
        "title": node_type.title or _title(node_type.name),
        "description": node_type.description or _docstring(node_type),
        "category": node_type.category,
        "icon": node_type.icon,
        "config_schema": config_schema(node_type.config_model),
        # Fixed labels (condition: true/false); with ``branches_from`` the keys of that
        # config field are labels too (switch: its cases, plus 'default').
        "branches": sorted(fixed) if fixed is not None else None,
        "branches_from": f"config.{node_type.branches_from}" if node_type.branches_from else None,
        "repeatable": node_type.repeatable,
        "waits": node_type.wait_bound is not None,
        "example": node_type.example,
    }


def config_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The config's JSON Schema, each property that may hold a template marked
    ``"x-template": true`` (unless it declares ``"x-template": false`` itself)."""
    schema = model.model_json_schema(by_alias=True, schema_generator=DurationSchema)
    definitions = schema.get("$defs", {})
    _mark(schema, definitions)
    for sub in definitions.values():
        _mark(sub, definitions)
    return schema


@lru_cache(maxsize=256)
def literal_fields(model: type[BaseModel]) -> frozenset[str]:
    """The config keys (as written, aliases included) of the model's top-level fields that
    declare ``"x-template": False``: the runner passes them to the node unrendered, and
    validation rejects a template in them."""
    found = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get(TEMPLATE) is False:
            found.add(info.alias or name)
    return frozenset(found)


def _mark(schema: dict[str, Any], definitions: dict[str, Any]) -> None:
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            _mark_value(prop, definitions)


def _mark_value(schema: dict[str, Any], definitions: dict[str, Any]) -> None:
    """Mark a value's schema, and the values inside it (map values, list items)."""
    schema.setdefault(TEMPLATE, _takes_strings(schema, definitions))
    if schema.get("additionalProperties") is True:
        schema["additionalProperties"] = {}  # the same meaning, with room for the mark
    for key in ("additionalProperties", "items"):
        inner = schema.get(key)
        if isinstance(inner, dict):
            _mark_value(inner, definitions)
    _mark(schema, definitions)


def _takes_strings(schema: dict[str, Any], definitions: dict[str, Any], depth: int = 0) -> bool:
    """Whether a value of this schema may be a string: templates are strings, rendered
    before the config is validated (a schema without a type, ``Any``, takes anything)."""
    if depth > 20:
        return False
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = definitions.get(ref.rsplit("/", 1)[-1], {})
        return _takes_strings(target, definitions, depth + 1)
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return any(_takes_strings(o, definitions, depth + 1) for o in options)
    kind = schema.get("type")
    if kind is None:
        return "enum" not in schema and "const" not in schema
    return kind == "string" or (isinstance(kind, list) and "string" in kind)


def _title(name: str) -> str:
    words = name.replace(".", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _docstring(node_type: NodeType) -> str:
    """A subclass's own docstring (a function's was read when it was declared)."""
    kind = type(node_type)
    doc = kind.__doc__
    if not doc or kind in (NodeType, FunctionNode):
        return ""
    doc = inspect.cleandoc(doc)
    return doc.split("\n\n")[0].replace("\n", " ")
