"""Unit tests for validating a definition against the registry: every problem, located."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.engine.validation import validate
from conveyor.errors import DefinitionError, Problem
from conveyor.nodes.builtin import build_registry
from conveyor.nodes.registry import Registry


@pytest.fixture(scope="module")
def registry() -> Registry:
    return build_registry(entry_points=False)


def _node(node_id: str, node_type: str = "transform", **fields: Any) -> dict[str, Any]:
    if node_type == "transform":
        fields.setdefault("config", {"output": 1})
    return {"id": node_id, "type": node_type, **fields}


def _definition(*nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "wf", "nodes": list(nodes), **extra}


def _problems(data: dict[str, Any], registry: Registry) -> list[Problem]:
    with pytest.raises(DefinitionError) as info:
        validate(data, registry)
    return info.value.problems


def _located(problems: list[Problem]) -> list[tuple[str | None, str]]:
    return [(p.node_id, p.path) for p in problems]


CONDITION = _node("c", "condition", config={"if": "{{ input.ok }}"})


def test_a_valid_definition_is_returned(registry: Registry) -> None:
    data = _definition(
        _node("fetch", "http.request", config={"url": "https://example.com/{{ input.id }}"}),
        CONDITION | {"needs": "fetch"},
        _node("yes", needs="c.true", config={"output": "{{ nodes.fetch.output.body }}"}),
        _node("no", "notify", needs="c.false", config={"title": "{{ nodes.c.output }}"}),
        _node("end", needs=["yes", "no"], config={"output": "{{ nodes.fetch.output }}"}),
    )
    definition = validate(data, registry)
    assert [n.id for n in definition.nodes] == ["fetch", "c", "yes", "no", "end"]


def test_a_shape_problem_is_located(registry: Registry) -> None:
    problems = _problems(_definition(_node("a", timeout="soon")), registry)
    assert _located(problems) == [("a", "timeout")]


def test_duplicate_ids(registry: Registry) -> None:
    problems = _problems(_definition(_node("a"), _node("b"), _node("a")), registry)
    assert _located(problems) == [("a", "id")]
    assert problems[0].message == "duplicate node id"


@pytest.mark.parametrize("bad_id", ["1a", "a-b", "a.b", "a b", ""])
def test_node_ids_must_be_usable_in_templates(registry: Registry, bad_id: str) -> None:
    problems = _problems(_definition(_node(bad_id)), registry)
    assert _located(problems) == [(bad_id, "id")]
    assert "nodes.<id>" in problems[0].message


def test_unknown_node_type_with_a_suggestion(registry: Registry) -> None:
    problems = _problems(_definition(_node("a", "transfrom")), registry)
    assert _located(problems) == [("a", "type")]
    assert problems[0].message == "unknown node type 'transfrom' (did you mean 'transform'?)"


def test_unknown_node_type_without_a_suggestion(registry: Registry) -> None:
    problems = _problems(_definition(_node("a", "zzzzzz")), registry)
    assert problems[0].message == "unknown node type 'zzzzzz'"


def test_missing_config_field(registry: Registry) -> None:
    problems = _problems(_definition(_node("call", "http.request")), registry)
    assert _located(problems) == [("call", "config.url")]
    assert "Field required" in problems[0].message


@pytest.mark.parametrize(
    ("node", "path"),
    [
        (_node("n", "http.request", config={"url": "ftp://x"}), "config.url"),
        (
            _node("n", "http.request", config={"url": "https://x", "method": "FETCH"}),
            "config.method",
        ),
        (_node("n", "http.request", config={"url": "https://x", "timeout": "x"}), "config.timeout"),
        (_node("n", "http.request", config={"url": "https://x", "colour": 1}), "config.colour"),
        (
            _node("n", "http.request", config={"url": "https://x", "headers": {"a": 1}}),
            "config.headers.a",
        ),
        (_node("n", "transform", config={}), "config.output"),
        (_node("n", "wait", config={"duration": "-"}), "config.duration"),
        (_node("n", "notify", config={"title": ""}), "config.title"),
        (_node("n", "switch", config={"value": 1, "cases": {}}), "config.cases"),
    ],
)
def test_invalid_config_is_located_by_field(
    registry: Registry, node: dict[str, Any], path: str
) -> None:
    problems = _problems(_definition(node), registry)
    assert _located(problems) == [("n", path)]


def test_model_level_config_errors_point_at_the_config(registry: Registry) -> None:
    problems = _problems(_definition(_node("w", "wait", config={})), registry)
    assert _located(problems) == [("w", "config")]
    assert "exactly one of 'duration' or 'until'" in problems[0].message


@pytest.mark.parametrize(
    "config",
    [
        {"url": "{{ input.url }}"},
        {"url": "https://x", "timeout": "{{ input.timeout }}"},
        {"url": "https://x", "expected_status": ["{{ input.status }}"]},
        {"url": "https://x", "method": "{{ input.method }}"},
    ],
)
def test_a_config_field_holding_a_template_is_checked_after_rendering(
    registry: Registry, config: dict[str, Any]
) -> None:
    validate(_definition(_node("call", "http.request", config=config)), registry)


def test_a_template_field_does_not_hide_other_invalid_fields(registry: Registry) -> None:
    config = {"url": "{{ input.url }}", "method": "FETCH"}
    problems = _problems(_definition(_node("call", "http.request", config=config)), registry)
    assert _located(problems) == [("call", "config.method")]


def test_needs_an_unknown_node(registry: Registry) -> None:
    problems = _problems(_definition(_node("a"), _node("b", needs=["a", "ghost"])), registry)
    assert _located(problems) == [("b", "needs[1]")]
    assert "'ghost'" in problems[0].message


def test_needs_an_unknown_node_with_a_branch(registry: Registry) -> None:
    problems = _problems(_definition(_node("b", needs="ghost.true")), registry)
    assert _located(problems) == [("b", "needs[0]")]
    assert problems[0].message.endswith("unknown node 'ghost'")


def test_edges_to_and_from_unknown_nodes(registry: Registry) -> None:
    data = _definition(
        _node("a"),
        edges=[{"from": "a", "to": "ghost"}, {"from": "phantom", "to": "a"}],
    )
    problems = _problems(data, registry)
    assert _located(problems) == [(None, "edges[0].to"), (None, "edges[1].from")]
    assert "'ghost'" in problems[0].message
    assert "'phantom'" in problems[1].message


def test_a_node_cannot_need_itself(registry: Registry) -> None:
    problems = _problems(_definition(_node("a", needs="a")), registry)
    assert _located(problems) == [("a", "needs[0]")]
    assert "itself" in problems[0].message


def test_an_edge_cannot_point_at_its_source(registry: Registry) -> None:
    problems = _problems(_definition(_node("a"), edges=[{"from": "a", "to": "a"}]), registry)
    assert _located(problems) == [("a", "edges[0]")]


def test_cycles_are_printed(registry: Registry) -> None:
    data = _definition(_node("a", needs="b"), _node("b", needs="a"))
    problems = _problems(data, registry)
    assert len(problems) == 1
    assert "a -> b -> a" in problems[0].message
    assert problems[0].node_id == "a"


def test_longer_cycles_are_printed_in_order(registry: Registry) -> None:
    data = _definition(
        _node("start"),
        _node("a", needs=["start", "c"]),
        _node("b", needs="a"),
        _node("c", needs="b"),
    )
    problems = _problems(data, registry)
    assert [p.message for p in problems] == ["the graph has a cycle: a -> b -> c -> a"]


def test_a_branch_the_condition_cannot_produce(registry: Registry) -> None:
    problems = _problems(_definition(CONDITION, _node("x", needs="c.maybe")), registry)
    assert _located(problems) == [("x", "needs[0]")]
    assert problems[0].message == "node 'c' cannot produce branch 'maybe' (it has: false, true)"


def test_switch_branches_come_from_its_cases(registry: Registry) -> None:
    switch = _node("s", "switch", config={"value": "{{ input.v }}", "cases": {"red": 1}})
    validate(
        _definition(switch, _node("r", needs="s.red"), _node("d", needs="s.default")), registry
    )
    problems = _problems(_definition(switch, _node("g", needs="s.green")), registry)
    assert _located(problems) == [("g", "needs[0]")]
    assert "(it has: default, red)" in problems[0].message


def test_a_branch_on_a_node_type_without_branches(registry: Registry) -> None:
    problems = _problems(_definition(_node("t"), _node("x", needs="t.true")), registry)
    assert _located(problems) == [("x", "needs[0]")]
    assert problems[0].message == "node 't' (transform) has no branches, so 'true' is invalid"


def test_a_branch_on_an_explicit_edge_is_checked(registry: Registry) -> None:
    data = _definition(CONDITION, _node("x"), edges=[{"from": "c", "to": "x", "branch": "yes"}])
    problems = _problems(data, registry)
    assert _located(problems) == [(None, "edges[0]")]
    assert "cannot produce branch 'yes'" in problems[0].message


def test_template_referring_to_an_unknown_node(registry: Registry) -> None:
    node = _node("a", config={"output": {"x": "{{ nodes.ghost.output }}"}})
    problems = _problems(_definition(node), registry)
    assert _located(problems) == [("a", "config.output.x")]
    assert problems[0].message == "template refers to unknown node 'ghost'"


def test_template_referring_to_a_node_downstream(registry: Registry) -> None:
    data = _definition(
        _node("a", config={"output": "{{ nodes.b.output }}"}),
        _node("b", needs="a"),
    )
    problems = _problems(data, registry)
    assert _located(problems) == [("a", "config.output")]
    assert "'b', which is not upstream of 'a'" in problems[0].message


def test_template_referring_to_a_node_on_a_sibling_branch(registry: Registry) -> None:
    data = _definition(
        CONDITION,
        _node("yes", needs="c.true"),
        _node("no", needs="c.false", config={"output": ["{{ nodes['yes'].output }}"]}),
    )
    problems = _problems(data, registry)
    assert _located(problems) == [("no", "config.output[0]")]
    assert "not upstream" in problems[0].message


def test_template_referring_to_an_indirect_ancestor_is_fine(registry: Registry) -> None:
    data = _definition(
        _node("a"),
        _node("b", needs="a"),
        _node("c", needs="b", config={"output": "{{ nodes.a.output }}"}),
    )
    validate(data, registry)


def test_template_syntax_errors(registry: Registry) -> None:
    node = _node("a", config={"output": {"list": ["ok", "{{ nodes.a.output "]}})
    problems = _problems(_definition(node), registry)
    assert _located(problems) == [("a", "config.output.list[1]")]
    assert "template syntax error" in problems[0].message


def test_template_problems_of_every_node_are_reported(registry: Registry) -> None:
    data = _definition(
        _node("a", config={"output": "{{ nodes.ghost }}"}),
        _node("b", config={"output": "{% if %}"}),
        _node("c", config={"output": "{{ nodes.a }}"}),
    )
    problems = _problems(data, registry)
    assert _located(problems) == [
        ("a", "config.output"),
        ("b", "config.output"),
        ("c", "config.output"),
    ]


def test_all_problems_are_collected(registry: Registry) -> None:
    data = _definition(
        _node("a", "transfrom"),
        _node("call", "http.request", config={"method": "GET"}),
        _node("b", needs="ghost"),
    )
    problems = _problems(data, registry)
    assert _located(problems) == [("a", "type"), ("call", "config.url"), ("b", "needs[0]")]
    assert len(problems) == 3


def test_every_node_problem_and_edge_problem_is_collected(registry: Registry) -> None:
    data = _definition(
        _node("a"),
        _node("a"),
        _node("x", "nope"),
        _node("w", "wait", config={"duration": "1s", "colour": 1}),
        _node("y", needs=["a.true", "ghost"]),
        edges=[{"from": "a", "to": "missing"}],
    )
    problems = _problems(data, registry)
    assert sorted(_located(problems), key=str) == sorted(
        [
            ("a", "id"),
            ("x", "type"),
            ("w", "config.colour"),
            ("y", "needs[0]"),
            ("y", "needs[1]"),
            (None, "edges[0].to"),
        ],
        key=str,
    )


def test_the_error_message_joins_every_problem(registry: Registry) -> None:
    data = _definition(_node("a", "transfrom"), _node("b", needs="ghost"))
    with pytest.raises(DefinitionError) as info:
        validate(data, registry)
    assert str(info.value).startswith(
        "node 'a', type: unknown node type 'transfrom' (did you mean 'transform'?); "
        "node 'b', needs[0]: "
    )
    assert str(info.value).endswith("unknown node 'ghost'")


def test_every_problem_in_one_pass_shape_config_graph_and_templates(registry: Registry) -> None:
    data = _definition(
        _node("a", timeout="soon"),
        _node("w1", "wait", needs="a", config={"duration": "later"}),
        _node("w2", "wait", needs="a", config={"duration": "-"}),
        _node("t", needs="a", config={"output": "{{ nodes.ghost.output }}"}),
        _node("h", "http.request", needs="a", retry={"max_attempts": 0}, config={}),
        settings={"on_error": "explode"},
    )
    problems = _problems(data, registry)
    assert sorted(_located(problems), key=str) == sorted(
        [
            ("a", "timeout"),
            ("h", "retry.max_attempts"),
            (None, "settings.on_error"),
            ("w1", "config.duration"),
            ("w2", "config.duration"),
            ("h", "config.url"),
            ("t", "config.output"),
        ],
        key=str,
    )


def test_a_cycle_is_found_alongside_shape_problems(registry: Registry) -> None:
    data = _definition(
        _node("a", needs="b", timeout="soon"), _node("b", needs="a", on_error="sometimes")
    )
    assert set(_located(_problems(data, registry))) == {
        ("a", "timeout"),
        ("b", "on_error"),
        ("a", "needs"),
    }


def test_a_broken_node_shape_reports_what_can_be_known(registry: Registry) -> None:
    data = _definition({"id": "a"}, _node("b", "wait", config={"duration": "x"}))
    assert set(_located(_problems(data, registry))) == {("a", "type"), ("b", "config.duration")}


@pytest.mark.parametrize(
    ("node_type", "config", "own"),
    [
        ("wait", {"duration": "2s"}, "config.duration"),
        ("wait_for_event", {"event": "approved"}, "config.timeout"),
        ("workflow.call", {"workflow": "child"}, "config.timeout"),
    ],
)
def test_a_step_timeout_on_a_waiting_node_is_rejected(
    registry: Registry, node_type: str, config: dict[str, Any], own: str
) -> None:
    problems = _problems(
        _definition(_node("w", node_type, config=config, timeout="300ms")), registry
    )
    assert _located(problems) == [("w", "timeout")]
    assert own in problems[0].message
