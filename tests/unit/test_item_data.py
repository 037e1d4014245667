"""Unit tests for the pure parts of the data nodes: conditions, conversions, dotted paths,
joins."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from conveyor.engine.validation import config_problems
from conveyor.nodes.builtin import build_registry
from conveyor.nodes.conditions import ItemCondition, holds
from conveyor.nodes.fields import FieldType, convert
from conveyor.nodes.merge import JoinKind, by_key, by_position
from conveyor.nodes.paths import MISSING, get_path, set_path


def _holds(item: Any, **condition: Any) -> bool:
    return holds(ItemCondition.model_validate(condition), item)


@pytest.mark.parametrize(
    ("item", "condition", "expected"),
    [
        ({"a": 1}, {"field": "a", "op": "eq", "value": 1}, True),
        ({"a": 1}, {"field": "a", "op": "eq", "value": "1"}, False),
        ({"a": True}, {"field": "a", "op": "eq", "value": 1}, False),
        ({"a": 2}, {"field": "a", "op": "gt", "value": 1.5}, True),
        ({"a": "2"}, {"field": "a", "op": "gt", "value": 1}, False),
        ({"d": "2026-02-01"}, {"field": "d", "op": "lt", "value": "2026-03-01"}, True),
        ({"t": ["x", "y"]}, {"field": "t", "op": "contains", "value": "y"}, True),
        ({"s": "Hello"}, {"field": "s", "op": "contains", "value": "ell"}, True),
        ({"s": "Hello"}, {"field": "s", "op": "starts_with", "value": "he"}, False),
        (
            {"s": "Hello"},
            {"field": "s", "op": "starts_with", "value": "he", "ignore_case": True},
            True,
        ),
        ({"s": "a1b"}, {"field": "s", "op": "matches", "value": r"\d"}, True),
        ({"s": "AB"}, {"field": "s", "op": "matches", "value": "ab", "ignore_case": True}, True),
        ({"a": None}, {"field": "a", "op": "exists"}, True),
        ({}, {"field": "a", "op": "exists"}, False),
        ({}, {"field": "a", "op": "empty"}, True),
        ({"a": []}, {"field": "a", "op": "empty"}, True),
        ({"a": 0}, {"field": "a", "op": "empty"}, False),
        ({}, {"field": "a", "op": "ne", "value": 1}, False),
        ({}, {"field": "a", "op": "eq", "value": 1, "negate": True}, True),
        ({"a": "b"}, {"field": "a", "op": "in", "value": ["a", "b"]}, True),
        ({"l": [{"x": 5}]}, {"field": "l.0.x", "op": "eq", "value": 5}, True),
        (3, {"op": "lte", "value": 3}, True),
    ],
)
def test_conditions(item: Any, condition: dict[str, Any], expected: bool) -> None:
    assert _holds(item, **condition) is expected


def test_in_needs_a_list_and_matches_a_valid_pattern() -> None:
    with pytest.raises(ValidationError, match="needs a list"):
        ItemCondition.model_validate({"field": "a", "op": "in", "value": "ab"})
    with pytest.raises(ValidationError, match="invalid regular expression"):
        ItemCondition.model_validate({"field": "a", "op": "matches", "value": "[a"})


@pytest.mark.parametrize(
    ("value", "to", "expected"),
    [
        ("12", FieldType.NUMBER, 12),
        ("1.5", FieldType.NUMBER, 1.5),
        (3.0, FieldType.INTEGER, 3),
        ("off", FieldType.BOOLEAN, False),
        (1, FieldType.BOOLEAN, True),
        (True, FieldType.STRING, "true"),
        ({"a": 1}, FieldType.STRING, '{"a": 1}'),
        ("[1]", FieldType.ARRAY, [1]),
        ('{"a": 1}', FieldType.JSON, {"a": 1}),
        (None, FieldType.NUMBER, None),
        ("as is", None, "as is"),
    ],
)
def test_conversions(value: Any, to: FieldType | None, expected: Any) -> None:
    assert convert(value, to) == expected


@pytest.mark.parametrize(
    ("value", "to", "message"),
    [
        ("x", FieldType.NUMBER, '"x" is not a number'),
        ("nan", FieldType.NUMBER, '"nan" is not a number'),
        (True, FieldType.NUMBER, "true is not a number"),
        (2.5, FieldType.INTEGER, "2.5 is not a whole number"),
        ("maybe", FieldType.BOOLEAN, '"maybe" is not a boolean'),
        ('{"a": 1}', FieldType.ARRAY, "is not an array"),
        ("{", FieldType.OBJECT, "is not valid JSON"),
    ],
)
def test_conversion_errors_say_why(value: Any, to: FieldType, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        convert(value, to)


def test_paths() -> None:
    data: dict[str, Any] = {"a": {"b": [1, 2]}}
    assert get_path(data, "a.b.1") == 2
    assert get_path(data, "a.c") is MISSING
    set_path(data, "x.y", 1)
    assert data["x"] == {"y": 1}
    with pytest.raises(ValueError, match=re.escape("'a.b' holds an array, not an object")):
        set_path(data, "a.b.c", 1)


def test_joins() -> None:
    left = [{"k": 1, "l": "a"}, {"k": 2, "l": "b"}, {"l": "c"}]
    right = [{"k": 1, "r": "x"}, {"k": "2", "r": "y"}, {"k": 3, "r": "z"}]
    assert by_key([left, right], "k", JoinKind.INNER) == [{"k": 1, "l": "a", "r": "x"}]
    assert len(by_key([left, right], "k", JoinKind.LEFT)) == 3
    assert len(by_key([left, right], "k", JoinKind.OUTER)) == 5
    assert by_position([[{"a": 1}], [{"b": 2}, {"b": 3}]], JoinKind.OUTER) == [
        {"a": 1, "b": 2},
        {"b": 3},
    ]


@pytest.mark.parametrize(
    "name", ["set", "filter", "split", "aggregate", "merge", "stop", "foreach"]
)
def test_each_data_and_flow_node_type_has_an_example_that_fits_its_config(name: str) -> None:
    registry = build_registry(entry_points=False)
    node_type = registry.get(name)
    assert node_type is not None and node_type.example is not None
    example = node_type.example
    assert example["type"] == name
    assert config_problems(node_type.config_model, example["config"], example["id"]) == []
