"""Unit tests for the definition model: shape, needs shorthand, located errors, file loading."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor.engine.definition import (
    Edge,
    ErrorStrategy,
    RetryPolicy,
    load_definition_file,
    parse_definition,
)
from conveyor.errors import DefinitionError, InputError


def _definition(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "wf", "nodes": list(nodes), **extra}


def _edges(edges: list[Edge]) -> list[tuple[str, str, str | None]]:
    return [(e.source, e.target, e.branch) for e in edges]


def _problems(data: Any) -> list[tuple[str | None, str]]:
    with pytest.raises(DefinitionError) as info:
        parse_definition(data)
    return [(p.node_id, p.path) for p in info.value.problems]


def test_parses_a_minimal_definition_with_defaults() -> None:
    definition = parse_definition(_definition({"id": "a", "type": "transform"}))
    node = definition.node("a")
    assert node.config == {}
    assert node.needs == []
    assert definition.retry_policy(node) == RetryPolicy()
    assert definition.error_strategy(node) == ErrorStrategy.STOP
    assert definition.timeout(node) is None


def test_needs_accepts_a_single_string() -> None:
    definition = parse_definition(
        _definition({"id": "a", "type": "t"}, {"id": "b", "type": "t", "needs": "a"})
    )
    assert definition.node("b").needs == ["a"]


def test_needs_shorthand_produces_edges_with_branch_labels() -> None:
    definition = parse_definition(
        _definition(
            {"id": "c", "type": "condition"},
            {"id": "yes", "type": "t", "needs": "c.true"},
            {"id": "no", "type": "t", "needs": ["c.false"]},
            {"id": "end", "type": "t", "needs": ["yes", "no"]},
        )
    )
    assert _edges(definition.all_edges()) == [
        ("c", "yes", "true"),
        ("c", "no", "false"),
        ("yes", "end", None),
        ("no", "end", None),
    ]


def test_all_edges_puts_explicit_edges_first() -> None:
    definition = parse_definition(
        _definition(
            {"id": "a", "type": "t"},
            {"id": "b", "type": "t"},
            {"id": "c", "type": "t", "needs": "a"},
            edges=[{"from": "a", "to": "b", "branch": "x"}],
        )
    )
    assert definition.edges[0].source == "a"
    assert _edges(definition.all_edges()) == [("a", "b", "x"), ("a", "c", None)]


def test_all_edges_does_not_change_the_explicit_edges() -> None:
    definition = parse_definition(
        _definition({"id": "a", "type": "t"}, {"id": "b", "type": "t", "needs": "a"})
    )
    definition.all_edges()
    assert definition.edges == []


def test_node_settings_override_workflow_settings() -> None:
    definition = parse_definition(
        _definition(
            {"id": "a", "type": "t"},
            {
                "id": "b",
                "type": "t",
                "timeout": "5s",
                "on_error": "continue",
                "retry": {"max_attempts": 4},
            },
            settings={"timeout": "1m", "on_error": "retry", "retry": {"max_attempts": 2}},
        )
    )
    a, b = definition.node("a"), definition.node("b")
    assert definition.timeout(a) == timedelta(minutes=1)
    assert definition.timeout(b) == timedelta(seconds=5)
    assert definition.error_strategy(a) == ErrorStrategy.RETRY
    assert definition.error_strategy(b) == ErrorStrategy.CONTINUE
    assert definition.retry_policy(a).max_attempts == 2
    assert definition.retry_policy(b).max_attempts == 4


def test_node_lookup_of_an_unknown_id_raises_key_error() -> None:
    definition = parse_definition(_definition({"id": "a", "type": "t"}))
    with pytest.raises(KeyError):
        definition.node("zzz")


def test_a_bad_duration_is_located_by_node_id_and_field() -> None:
    data = _definition({"id": "a", "type": "t"}, {"id": "slow", "type": "t", "timeout": "soon"})
    with pytest.raises(DefinitionError) as info:
        parse_definition(data)
    [problem] = info.value.problems
    assert problem.node_id == "slow"
    assert problem.path == "timeout"
    assert "'soon' is not a duration" in problem.message


def test_nested_node_fields_keep_their_path() -> None:
    data = _definition({"id": "a", "type": "t", "retry": {"max_attempts": 0}})
    assert _problems(data) == [("a", "retry.max_attempts")]


def test_a_node_without_an_id_is_located_by_its_index() -> None:
    assert _problems(_definition({"type": "t"})) == [(None, "nodes.0.id")]


def test_workflow_level_problems_have_no_node_id() -> None:
    data = _definition({"id": "a", "type": "t"}, settings={"timeout": "x"})
    data["name"] = ""
    assert sorted(_problems(data), key=lambda p: p[1]) == [
        (None, "name"),
        (None, "settings.timeout"),
    ]


def test_every_shape_problem_is_reported_at_once() -> None:
    data = _definition(
        {"id": "a", "type": "t", "timeout": "x"},
        {"id": "b", "type": "t", "on_error": "explode"},
    )
    assert _problems(data) == [("a", "timeout"), ("b", "on_error")]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_definition({"id": "a", "type": "t", "colour": "red"}), ("a", "colour")),
        (_definition({"id": "a", "type": "t"}, colour="red"), (None, "colour")),
        (
            _definition({"id": "a", "type": "t"}, settings={"colour": "red"}),
            (None, "settings.colour"),
        ),
        (
            _definition({"id": "a", "type": "t", "retry": {"colour": "red"}}),
            ("a", "retry.colour"),
        ),
        (
            _definition({"id": "a", "type": "t"}, edges=[{"from": "a", "to": "a", "x": 1}]),
            (None, "edges.0.x"),
        ),
    ],
)
def test_extra_fields_are_forbidden(data: dict[str, Any], expected: tuple[str, str]) -> None:
    assert _problems(data) == [expected]


@pytest.mark.parametrize("data", [[], "name: x", None, 42])
def test_a_definition_must_be_a_mapping(data: Any) -> None:
    with pytest.raises(DefinitionError, match="must be a mapping"):
        parse_definition(data)


def test_a_definition_needs_at_least_one_node() -> None:
    assert _problems({"name": "wf", "nodes": []}) == [(None, "nodes")]


def test_problem_text_names_node_and_path() -> None:
    data = _definition({"id": "slow", "type": "t", "timeout": "soon"})
    with pytest.raises(DefinitionError, match=r"^node 'slow', timeout: .*'soon'"):
        parse_definition(data)


YAML_TEXT = """\
name: greet
nodes:
  - id: check
    type: condition
    config:
      if: "{{ input.ok }}"
  - id: hello
    type: transform
    needs: check.true
    timeout: 500ms
    config:
      output: {greeting: hi}
"""


def test_loads_yaml_files(tmp_path: Path) -> None:
    path = tmp_path / "greet.yaml"
    path.write_text(YAML_TEXT, encoding="utf-8")
    definition = parse_definition(load_definition_file(path))
    assert definition.name == "greet"
    assert definition.node("check").config == {"if": "{{ input.ok }}"}
    assert definition.node("hello").timeout == timedelta(milliseconds=500)
    assert _edges(definition.all_edges()) == [("check", "hello", "true")]


def test_loads_json_files(tmp_path: Path) -> None:
    data = _definition({"id": "a", "type": "t"}, {"id": "b", "type": "t", "needs": ["a"]})
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_definition_file(str(path)) == data


def test_invalid_yaml_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\nnodes: {", encoding="utf-8")
    with pytest.raises(InputError, match="is not valid YAML"):
        load_definition_file(path)


def test_invalid_json_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"name": ', encoding="utf-8")
    with pytest.raises(InputError, match="is not valid JSON"):
        load_definition_file(path)


def test_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load_definition_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n", ""])
def test_a_file_without_a_top_level_mapping_is_a_definition_error(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DefinitionError, match="must contain a mapping"):
        load_definition_file(path)
