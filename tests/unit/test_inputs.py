"""The declared input schema: checked itself when a definition is saved, and an execution's
input checked against it, one problem per field, each at its path under ``input``."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.engine.inputs import check_input, input_problems, schema_problems
from conveyor.engine.validation import check
from conveyor.errors import InvalidInput, Problem
from conveyor.nodes.builtin import build_registry

ORDER = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "title": "Email", "format": "email"},
        "count": {"type": "integer", "minimum": 1, "default": 1},
        "size": {"type": "string", "enum": ["s", "m", "l"]},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["email", "size"],
}


def paths(problems: list[Problem]) -> dict[str, str]:
    return {p.path: p.message for p in problems}


def test_a_matching_input_has_no_problems() -> None:
    value = {"email": "a@example.com", "size": "m", "count": 2, "tags": ["x"]}
    assert input_problems(ORDER, value) == []
    check_input(ORDER, value)
    check_input(None, {"anything": "goes"})  # no schema declared


def test_every_failing_field_is_a_problem_at_its_path() -> None:
    value: dict[str, Any] = {
        "count": 0,
        "size": "xl",
        "address": {},
        "tags": ["ok", 5],
    }
    found = paths(input_problems(ORDER, value))
    assert found == {
        "input.email": "a value is required",
        "input.count": "0 is less than the minimum of 1",
        "input.size": "'xl' is not one of ['s', 'm', 'l']",
        "input.address.city": "a value is required",
        "input.tags[1]": "5 is not of type 'string'",
    }
    with pytest.raises(InvalidInput) as raised:
        check_input(ORDER, value)
    assert len(raised.value.problems) == 5
    assert "input.count: 0 is less than the minimum of 1" in str(raised.value)


def test_an_input_that_is_not_an_object_is_one_problem_at_input() -> None:
    assert paths(input_problems(ORDER, [1, 2])) == {"input": "[1, 2] is not of type 'object'"}


def test_a_huge_value_is_not_quoted_in_full() -> None:
    [problem] = input_problems({"type": "string"}, ["x" * 10_000])
    assert len(problem.message) <= 300


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"type": "objekt"}, "input.type"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "input.properties.a.type"),
        ({"type": "object", "required": "a"}, "input.required"),
        ({"properties": {"a": {"enum": 3}}}, "input.properties.a.enum"),
        ({"properties": {"a": {"$ref": "https://example.com/s.json"}}}, "input.properties.a.$ref"),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "input.properties.a.$ref"),
    ],
)
def test_a_schema_that_is_not_one_is_a_problem_at_its_path(
    schema: dict[str, Any], path: str
) -> None:
    [problem] = schema_problems(schema)
    assert problem.path == path


def test_local_references_and_older_drafts_are_schemas() -> None:
    assert schema_problems(ORDER) == []
    with_defs = {"$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s"}}}
    assert schema_problems(with_defs) == []
    assert paths(input_problems(with_defs, {"a": 1})) == {"input.a": "1 is not of type 'string'"}
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"}
    assert schema_problems(draft7) == []


def test_an_unresolvable_reference_at_enqueue_is_a_problem_not_a_crash() -> None:
    [problem] = input_problems({"$ref": "#/nowhere"}, {})
    assert "resolves to nothing" in problem.message


def test_validation_reports_a_bad_input_schema_with_the_other_problems() -> None:
    data = {
        "name": "x",
        "input": {"type": "object", "properties": {"a": {"type": 5}}},
        "nodes": [{"id": "a", "type": "transfrom"}],
    }
    definition, problems = check(data, build_registry(entry_points=False))
    assert definition is None
    assert [(p.node_id, p.path) for p in problems] == [
        (None, "input.properties.a.type"),
        ("a", "type"),
    ]
    data["input"] = "not a mapping"
    _, problems = check(data, build_registry(entry_points=False))
    assert (None, "input") in [(p.node_id, p.path) for p in problems]
