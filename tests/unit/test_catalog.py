"""The palette: every registered node type described for an editor."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from conveyor.nodes.base import NodeContext, NodeType, node
from conveyor.nodes.builtin import build_registry
from conveyor.nodes.catalog import catalog, config_schema, describe
from conveyor.nodes.registry import Registry


def by_name() -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in catalog(build_registry(entry_points=False))}


def test_every_built_in_is_listed_with_a_category_icon_and_description() -> None:
    found = by_name()
    assert list(found) == sorted(found)
    assert set(found) == set(build_registry(entry_points=False).names())
    for entry in found.values():
        assert entry["title"] and entry["description"] and entry["icon"]
        assert entry["category"] in {"http", "control", "data", "messaging", "workflow", "ai"}
        assert entry["config_schema"]["type"] == "object"
    http = found["http.request"]
    assert (http["title"], http["category"]) == ("HTTP request", "http")
    assert found["notify"]["category"] == "messaging"
    assert found["transform"]["category"] == "data"
    assert found["llm.chat"]["category"] == "ai"


def test_branches_fixed_or_from_the_config() -> None:
    found = by_name()
    assert found["condition"]["branches"] == ["false", "true"]
    assert found["condition"]["branches_from"] is None
    assert found["switch"]["branches"] == ["default"]
    assert found["switch"]["branches_from"] == "config.cases"
    assert found["transform"]["branches"] is None
    assert found["wait_for_event"]["waits"] and not found["transform"]["waits"]


def test_values_that_may_hold_templates_are_marked() -> None:
    props = by_name()["http.request"]["config_schema"]["properties"]
    marked = {name for name, schema in props.items() if schema["x-template"]}
    assert marked == {"method", "url", "json", "body", "timeout"}
    assert props["headers"]["additionalProperties"]["x-template"] is True
    assert props["query"]["additionalProperties"] == {"x-template": True}
    # durations read as people write them, not ISO 8601
    assert props["timeout"]["default"] == "30s"
    assert by_name()["transform"]["config_schema"]["properties"]["output"]["x-template"]


class Charge(BaseModel):
    amount: int
    currency: str = Field(json_schema_extra={"x-template": False})
    note: str | None = None
    nested: Inner | None = None


class Inner(BaseModel):
    label: str
    size: int


Charge.model_rebuild()


def test_a_field_may_refuse_templates_and_nested_models_are_marked() -> None:
    schema = config_schema(Charge)
    props = schema["properties"]
    assert props["amount"]["x-template"] is False
    assert props["currency"]["x-template"] is False
    assert props["note"]["x-template"] is True
    inner = schema["$defs"]["Inner"]["properties"]
    assert inner["label"]["x-template"] and not inner["size"]["x-template"]


def test_plugins_describe_themselves_or_get_defaults() -> None:
    @node("acme.send_invoice", config=Charge, repeatable=False)
    def send(ctx: NodeContext, config: Charge) -> None:
        """Send an invoice.

        Longer text that is not the summary."""

    @node("acme.ping", category="http", icon="radar", title="Ping")
    def ping(ctx: NodeContext, config: Any) -> None:
        pass

    class Documented(NodeType):
        """Count things,
        carefully."""

        name = "acme.count"

    registry = Registry([send, ping, Documented()])
    found = {entry["name"]: entry for entry in catalog(registry)}
    invoice = found["acme.send_invoice"]
    assert (invoice["title"], invoice["description"]) == ("Acme send invoice", "Send an invoice.")
    assert (invoice["category"], invoice["icon"]) == ("custom", "node")
    assert invoice["repeatable"] is False
    assert (found["acme.ping"]["title"], found["acme.ping"]["icon"]) == ("Ping", "radar")
    assert found["acme.ping"]["description"] == ""
    assert describe(Documented())["description"] == "Count things, carefully."


def test_a_code_nodes_source_is_marked_as_never_a_template() -> None:
    from conveyor.nodes.catalog import literal_fields
    from conveyor.nodes.code import CodeConfig

    properties = by_name()["code"]["config_schema"]["properties"]
    assert properties["code"]["x-template"] is False
    assert properties["input"]["x-template"] is True
    assert literal_fields(CodeConfig) == frozenset({"code"})


def test_the_code_nodes_example_validates() -> None:
    from conveyor.engine.validation import validate
    from conveyor.nodes.code import Code

    order = {"id": "order", "type": "transform", "config": {"output": {"items": []}}}
    example = {**(Code.example or {}), "needs": ["order"]}
    definition = {"name": "example", "nodes": [order, example]}
    assert validate(definition, build_registry(entry_points=False)).nodes[1].type == "code"
