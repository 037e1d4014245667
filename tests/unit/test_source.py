"""Definitions as YAML text: problems located at their line and column, syntax errors at
theirs, and YAML that would expand without bound refused before it is built."""

from __future__ import annotations

import pytest

from conveyor.engine.definition import load_yaml
from conveyor.engine.source import (
    Source,
    document_path,
    load_source,
    locate,
    position,
    review,
    split_path,
)
from conveyor.engine.validation import check
from conveyor.errors import Problem
from conveyor.nodes.builtin import build_registry

TEXT = """\
name: demo
description: located problems
nodes:
  - id: fetch
    type: http.request
    config:
      url: ftp://example.com
      headers:
        X.Trace: "1"
  - id: after
    type: transform
    needs: [fetch, ghost]
    config:
      output: {"a": [1, 2, {deep: true}]}
edges:
  - {from: fetch, to: nowhere}
"""


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def test_split_path_reads_both_notations() -> None:
    assert split_path("nodes[2].config.url") == ["nodes", 2, "config", "url"]
    assert split_path("nodes.2.config.url") == ["nodes", 2, "config", "url"]
    assert split_path("config.output.a[2].deep") == ["config", "output", "a", 2, "deep"]
    assert split_path("") == []


@pytest.mark.parametrize(
    ("path", "line", "column"),
    [
        ([], 1, 1),
        (["name"], 1, 1),
        (["nodes", 0], 4, 5),
        (["nodes", 0, "config", "url"], 7, 7),
        (["nodes", 1, "needs", 1], 12, 20),
        (["nodes", 1, "config", "output", "a", 2, "deep"], 14, 29),
        (["edges", 0, "to"], 16, 19),
        # a key with a dot in it takes two segments
        (["nodes", 0, "config", "headers", "X", "Trace"], 9, 9),
        # deeper than the text goes: the deepest part that exists
        (["nodes", 0, "config", "method"], 6, 5),
        (["nodes", 7, "id"], 3, 1),
        (["settings", "retry"], 1, 1),
    ],
)
def test_position_is_the_line_and_column_of_the_key_or_item(
    path: list[str | int], line: int, column: int
) -> None:
    source = load_source(TEXT)
    assert source.root is not None
    assert position(source.root, path) == (line, column)


def test_a_nodes_problem_is_found_by_the_node_id() -> None:
    data = load_yaml(TEXT)
    problem = Problem("bad", node_id="after", path="config.output.a[2]")
    assert document_path(problem, data) == ["nodes", 1, "config", "output", "a", 2]
    assert document_path(Problem("x", path="edges[0].to"), data) == ["edges", 0, "to"]
    self_edge = Problem("a node cannot depend on itself", node_id="fetch", path="edges[0]")
    assert document_path(self_edge, data) == ["edges", 0]
    # no such node (or nodes is not a list): the path as it is
    assert document_path(Problem("x", node_id="nope", path="id"), data) == ["id"]
    assert document_path(Problem("x", node_id="a", path="id"), {"nodes": 3}) == ["id"]


def test_review_locates_every_problem_with_the_messages_of_validation() -> None:
    registry = build_registry(entry_points=False)
    result = review(load_source(TEXT), registry)
    assert not result.valid and result.definition is None
    _, expected = check(load_yaml(TEXT), registry)
    assert [located.problem for located in result.problems] == expected
    found = {(p.problem.node_id, p.problem.path): p for p in result.problems}
    url = found[("fetch", "config.url")]
    assert (url.document_path, url.line, url.column) == ("nodes[0].config.url", 7, 7)
    assert "https?" in url.problem.message
    ghost = found[("after", "needs[1]")]
    assert (ghost.line, ghost.column) == (12, 20)
    edge = found[(None, "edges[0].to")]
    assert edge.line == 16
    assert lines_of(TEXT)[edge.line - 1].strip().startswith("- {from: fetch")


def test_a_valid_definition_has_no_problems_and_the_definition() -> None:
    text = "name: ok\nnodes:\n  - {id: a, type: transform, config: {output: 1}}\n"
    result = review(load_source(text), build_registry(entry_points=False))
    assert result.valid and result.problems == []
    assert result.definition is not None and result.definition.name == "ok"


def test_json_data_is_reviewed_without_positions() -> None:
    data = {"name": "x", "nodes": [{"id": "a", "type": "nope"}]}
    [located] = review(Source(data), build_registry(entry_points=False)).problems
    assert located.problem.node_id == "a" and located.document_path == "nodes[0].type"
    assert (located.line, located.column) == (None, None)


@pytest.mark.parametrize(
    ("text", "line", "column", "says"),
    [
        ("name: x\nnodes: [1, 2\n", 3, 1, "expected ',' or ']'"),
        ("name: x\n  nodes: 1\n", 2, 8, "mapping values are not allowed here"),
        ("name: x\nnodes:\n\t- a\n", 3, 1, "found character '\\t'"),
        ("a: !!python/object:os.system x\n", 1, 4, "could not determine a constructor"),
        ("name: x\nnodes: \x1f\n", 2, 8, "character #x001f is not allowed"),
        (
            "name: x\nnodes:\n  - id: a\n    id: b\n",
            4,
            5,
            "key 'id' is given twice (first on line 3)",
        ),
        ("name: x\nname: y\n", 2, 1, "key 'name' is given twice (first on line 1)"),
    ],
)
def test_a_syntax_error_is_one_problem_at_its_own_line(
    text: str, line: int, column: int, says: str
) -> None:
    source = load_source(text)
    assert source.data is None
    [located] = source.problems
    assert located.problem.message.startswith("not valid YAML: ")
    assert says in located.problem.message
    assert (located.line, located.column) == (line, column)
    assert review(source, build_registry(entry_points=False)).problems == [located]


def test_values_json_cannot_hold_are_problems_at_their_line_and_times_become_text() -> None:
    text = (
        "name: x\nnodes:\n  - id: a\n    type: wait\n    config: {until: 2030-01-01T00:00:00Z}\n"
        "  - id: b\n    type: transform\n    config:\n      output: .nan\n"
        "      more: !!binary AAAA\n"
    )
    source = load_source(text)
    assert source.data is None
    assert [(p.problem.path, p.line) for p in source.problems] == [
        ("nodes[1].config.output", 9),
        ("nodes[1].config.more", 10),
    ]
    fine = load_source(text.split("  - id: b")[0])
    assert fine.data["nodes"][0]["config"]["until"] == "2030-01-01T00:00:00+00:00"


def test_aliases_that_expand_without_bound_are_refused_before_they_are_built() -> None:
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        bomb.append(f"{level}: &{level} [{', '.join(['*' + previous] * 10)}]")
    [located] = load_source("\n".join(bomb)).problems
    assert "expands to more than" in located.problem.message
    [looped] = load_source("a: &a [*a]").problems
    assert "nested more than" in looped.problem.message


def test_keys_that_only_look_alike_or_come_from_a_merge_are_not_duplicates() -> None:
    data = load_yaml("1: int\n'1': text\nbase: &b {a: 1, c: 3}\nx:\n  <<: *b\n  a: 2\n")
    assert data == {1: "int", "1": "text", "base": {"a": 1, "c": 3}, "x": {"a": 2, "c": 3}}


def test_an_empty_text_or_a_list_is_not_a_definition() -> None:
    registry = build_registry(entry_points=False)
    for text in ("", "- 1\n"):
        [located] = review(load_source(text), registry).problems
        assert located.problem.message == "a workflow definition must be a mapping"


def test_locate_without_a_tree_gives_no_line() -> None:
    located = locate(Problem("x", node_id="a", path="type"), Source({"nodes": [{"id": "a"}]}))
    assert (located.document_path, located.line) == ("nodes[0].type", None)
    assert located.as_dict() == {
        "message": "x",
        "node_id": "a",
        "path": "type",
        "document_path": "nodes[0].type",
        "line": None,
        "column": None,
    }
