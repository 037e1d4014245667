"""The node reference: every registered node type as Markdown (docs/nodes.md), made from
the same catalog the dashboard's palette shows, so the two cannot disagree.

Regenerate after adding or changing a node type::

    python -m conveyor.nodes.reference > docs/nodes.md

(or ``conveyor nodes docs --write docs/nodes.md``); a test fails while the file is stale.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml

from conveyor.nodes.catalog import TEMPLATE, describe
from conveyor.nodes.registry import Registry

COMMAND = "python -m conveyor.nodes.reference > docs/nodes.md"
_DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"
_DURATION_TEXT = "seconds, or a string such as"

HEADER = f"""# Node types

Every built-in node type: what it does, its config, and an example node entry (as it
appears in a workflow's `nodes:` list). Generated from the node types themselves by
`{COMMAND}`; do not edit by hand.

In the config tables, *template* says whether the field may hold a template
(`{{{{ input.x }}}}`, `{{{{ nodes.get.output.body }}}}`), rendered before the config is
checked. A *duration* is a number of seconds or a string such as `500ms`, `30s`, `5m`,
`1h30m`, `2d`.
"""


def reference(registry: Registry) -> str:
    """The whole reference: an index, then one section per node type, by name."""
    found = (registry.get(name) for name in registry.names())
    types = [t for t in found if t is not None]
    lines = [HEADER, "| Node type | Category | What it does |", "| --- | --- | --- |"]
    entries = [describe(t) for t in types]
    for entry in entries:
        anchor = _anchor(entry["name"])
        lines.append(
            f"| [`{entry['name']}`](#{anchor}) | {entry['category']} | "
            f"{_cell(entry['description'])} |"
        )
    body = "\n".join(lines) + "\n"
    for entry, node_type in zip(entries, types, strict=True):
        body += "\n" + section(entry, node_type.example)
    return body


def section(entry: dict[str, Any], example: dict[str, Any] | None) -> str:
    """One node type's section: title, facts, config fields, example."""
    out = [f"## {entry['name']}", "", f"**{entry['title']}**: {entry['description']}", ""]
    out += [f"- {fact}" for fact in _facts(entry)]
    out += ["", *config_table(entry["config_schema"])]
    out += ["", "Example:", "", "```yaml", example_yaml(example).rstrip("\n"), "```", ""]
    return "\n".join(out)


def _facts(entry: dict[str, Any]) -> list[str]:
    facts = [f"Category: {entry['category']}"]
    if entry["branches"] is not None or entry["branches_from"]:
        labels = ", ".join(f"`{b}`" for b in entry["branches"] or [])
        if entry["branches_from"]:
            extra = f"the keys of `{entry['branches_from']}`"
            labels = f"{extra}, and {labels}" if labels else extra
        facts.append(f"Branches: {labels}")
    if not entry["repeatable"]:
        facts.append("Not repeatable: one attempt unless the node gives a retry policy")
    if entry["waits"]:
        facts.append("Waits without holding a worker (a step `timeout` does not apply)")
    return facts


def config_table(schema: dict[str, Any]) -> list[str]:
    """The config's fields as a Markdown table (or a line saying there are none), then one
    table for each object type its fields use (an attachment's fields)."""
    definitions: dict[str, Any] = schema.get("$defs", {})
    rows = _fields(schema, definitions) or ["No config."]
    for name, sub in definitions.items():
        if sub.get("properties"):
            rows += ["", f"Fields of `{sub.get('title', name)}`:", "", *_fields(sub, definitions)]
    return rows


def _fields(schema: dict[str, Any], definitions: dict[str, Any]) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return []
    required = set(schema.get("required", []))
    rows = [
        "| Field | Type | Required | Default | Template | Description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, prop in properties.items():
        default = _default(prop) if name not in required else ""
        rows.append(
            f"| `{name}` | {_cell(type_name(prop, definitions))} | "
            f"{'yes' if name in required else 'no'} | {_cell(default)} | "
            f"{_template(prop)} | {_cell(_description(prop))} |"
        )
    return rows


def type_name(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    """A short human name for a JSON Schema: string, duration, list of integer, ..."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = definitions.get(ref.rsplit("/", 1)[-1], {})
        return str(target.get("title", "object")) if "enum" not in target else _enum(target)
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        if _is_duration(options):
            return "duration"
        kept = [o for o in options if o.get("type") != "null"]
        return " or ".join(dict.fromkeys(type_name(o, definitions) for o in kept)) or "null"
    if "enum" in schema:
        return _enum(schema)
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        return f"list of {type_name(items, definitions)}" if isinstance(items, dict) else "list"
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict) and values.get("type"):
            return f"map of {type_name(values, definitions)}"
        return "object"
    if kind == "string" and schema.get("format") == "date-time":
        return "date-time"
    if isinstance(kind, str):
        return kind
    return "any"


def _is_duration(options: list[Any]) -> bool:
    if any(o.get("pattern") == _DURATION_PATTERN for o in options):
        return True
    return any(isinstance(o.get("anyOf"), list) and _is_duration(o["anyOf"]) for o in options)


def _enum(schema: dict[str, Any]) -> str:
    return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop or prop["default"] is None:
        return ""
    return f"`{json.dumps(prop['default'])}`"


def _description(prop: dict[str, Any]) -> str:
    text = prop.get("description")
    if not isinstance(text, str) or text.startswith(_DURATION_TEXT):
        return ""  # the generic duration text is said once, in the header
    return text


def _template(prop: dict[str, Any]) -> str:
    if prop.get(TEMPLATE):
        return "yes"
    for key, where in (("additionalProperties", "values"), ("items", "items")):
        inner = prop.get(key)
        if isinstance(inner, dict) and inner.get(TEMPLATE):
            return f"in {where}"
    return "no"


def example_yaml(example: dict[str, Any] | None) -> str:
    if example is None:
        return "# no example yet"
    text: str = yaml.safe_dump([example], sort_keys=False, allow_unicode=True, width=88)
    return text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _anchor(name: str) -> str:
    """GitHub's heading anchor: lower case, punctuation but ``-`` and ``_`` dropped."""
    return "".join(c for c in name.lower() if c.isalnum() or c in "-_")


def show(registry: Registry, name: str) -> str | None:
    """One node type's section, or None when there is no such node type."""
    node_type = registry.get(name)
    if node_type is None:
        return None
    return section(describe(node_type), node_type.example)


def main() -> None:
    from conveyor.nodes.builtin import build_registry

    sys.stdout.write(reference(build_registry(entry_points=False)))


if __name__ == "__main__":
    main()
