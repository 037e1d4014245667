"""The node reference (docs/nodes.md): generated from the node types, never stale, and
every built-in documented with an example that is a valid node entry."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from conveyor.engine.validation import validate
from conveyor.nodes.base import NodeContext, node
from conveyor.nodes.builtin import build_registry
from conveyor.nodes.reference import COMMAND, config_table, reference, show

DOCS = Path(__file__).parents[2] / "docs" / "nodes.md"


def test_docs_nodes_md_is_the_generated_reference() -> None:
    expected = reference(build_registry(entry_points=False))
    assert DOCS.read_text(encoding="utf-8") == expected, (
        f"docs/nodes.md is stale: regenerate it with `{COMMAND}`"
    )


def test_every_built_in_has_an_example_that_validates() -> None:
    registry = build_registry(entry_points=False)
    for name in registry.names():
        node_type = registry.get(name)
        assert node_type is not None and node_type.example is not None, name
        assert node_type.example["type"] == name
        validate(standalone(node_type.example), registry)


def standalone(example: dict[str, Any]) -> dict[str, Any]:
    """A definition holding ``example``, with a stand-in upstream for each node it names:
    in its templates (``nodes.report.output``: a transform) or its ``needs`` (``check`` or
    ``check.false``: a condition when the branch is true/false, else a switch)."""
    needs = example.get("needs", [])
    needs = [needs] if isinstance(needs, str) else list(needs)
    stubs: dict[str, dict[str, Any]] = {}
    for need in needs:
        node_id, _, label = need.partition(".")
        if label in ("true", "false"):
            stubs[node_id] = {"id": node_id, "type": "condition", "config": {"if": True}}
        elif label:
            config = {"value": label, "cases": {label: label}}
            stubs[node_id] = {"id": node_id, "type": "switch", "config": config}
        else:
            stubs[node_id] = {"id": node_id, "type": "transform", "config": {"output": {}}}
    for node_id in sorted(set(re.findall(r"nodes\.(\w+)", json.dumps(example)))):
        if node_id not in stubs:
            stubs[node_id] = {"id": node_id, "type": "transform", "config": {"output": {}}}
            needs.append(node_id)
    node = {**example, "needs": needs} if needs else example
    return {"name": "reference-example", "nodes": [*stubs.values(), node]}


def test_every_built_in_has_a_section_with_its_fields_and_example() -> None:
    registry = build_registry(entry_points=False)
    text = reference(registry)
    for name in registry.names():
        section = show(registry, name)
        assert section is not None and section in text
        assert section.startswith(f"## {name}\n") and "```yaml\n- id: " in section
    task = show(registry, "task.create")
    assert task is not None
    assert "| `due_in` | duration | no |  | yes | when it is due, counted from" in task
    assert "| `title` | string | yes |  | yes | what needs doing |" in task
    http = show(registry, "http.request")
    assert http is not None and "| `headers` | map of string | no |  | in values |" in http
    assert "one of `GET`, `POST`" in http and '| `"30s"` |' in http
    switch = show(registry, "switch")
    assert switch is not None and "Branches: the keys of `config.cases`, and `default`" in switch
    assert show(registry, "no.such.type") is None


class Part(BaseModel):
    name: str = Field(description="the part's name")


class NestedConfig(BaseModel):
    tags: list[str] = Field(default_factory=list, description="labels | with a pipe")
    limit: int | None = None
    parts: list[Part] = Field(default_factory=list)


def test_a_plugin_node_type_without_an_example_still_gets_a_section() -> None:
    @node("acme.tag", config=NestedConfig, description="Tag things.")
    async def tag(ctx: NodeContext, config: NestedConfig) -> None:
        return None

    registry = build_registry(entry_points=False)
    registry.register(tag)
    section = show(registry, "acme.tag")
    assert section is not None and "# no example yet" in section
    rows = config_table({"properties": {}})
    assert rows == ["No config."]
    assert "| `tags` | list of string | no |  | in items | labels \\| with a pipe |" in (section)
    assert "| `limit` | integer | no |  | no |  |" in section
    assert "| `parts` | list of Part |" in section
    assert "Fields of `Part`:\n\n| Field |" in section
    assert "| `name` | string | yes |  | yes | the part's name |" in section
