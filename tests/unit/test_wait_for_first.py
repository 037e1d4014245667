"""Unit tests for ``wait_for: first``: a node that starts on its first live incoming edge."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.engine.definition import parse_definition
from conveyor.engine.graph import Graph, NodeState, NodeStatus
from conveyor.errors import DefinitionError

SUCCEEDED = NodeStatus(NodeState.SUCCEEDED)
RUNNING = NodeStatus(NodeState.RUNNING)
SKIPPED = NodeStatus(NodeState.SKIPPED)
FAILED = NodeStatus(NodeState.FAILED)


def _graph(*nodes: tuple[str, Any, str]) -> Graph:
    """Nodes as (id, needs, wait_for)."""
    return Graph(
        parse_definition(
            {
                "name": "wf",
                "nodes": [
                    {"id": i, "type": "transform", "needs": needs, "wait_for": wait_for}
                    for i, needs, wait_for in nodes
                ],
            }
        )
    )


RACE = _graph(("a", [], "all"), ("b", [], "all"), ("m", ["a", "b"], "first"), ("n", "m", "all"))


def test_first_starts_when_one_upstream_succeeded_while_the_other_runs() -> None:
    decision = RACE.decide({"a": RUNNING, "b": SUCCEEDED})
    assert decision.ready == ["m"]
    assert decision.skip == []


def test_all_still_waits_for_every_upstream() -> None:
    graph = _graph(("a", [], "all"), ("b", [], "all"), ("m", ["a", "b"], "all"))
    assert graph.decide({"a": RUNNING, "b": SUCCEEDED}).ready == []


def test_first_runs_once_it_is_no_longer_pending() -> None:
    decision = RACE.decide({"a": SUCCEEDED, "b": SUCCEEDED, "m": RUNNING})
    assert decision.ready == []


def test_first_waits_while_no_edge_is_live() -> None:
    assert RACE.decide({"a": RUNNING, "b": SKIPPED}).ready == []
    assert RACE.decide({"a": RUNNING, "b": FAILED}).ready == []


def test_first_is_skipped_when_every_upstream_finished_without_a_live_edge() -> None:
    decision = RACE.decide({"a": SKIPPED, "b": FAILED})
    assert decision.skip == ["m", "n"]


def test_first_follows_branches() -> None:
    graph = _graph(("c", [], "all"), ("slow", [], "all"), ("m", ["c.true", "slow"], "first"))
    false = NodeStatus(NodeState.SUCCEEDED, branch="false")
    true = NodeStatus(NodeState.SUCCEEDED, branch="true")
    assert graph.decide({"c": false, "slow": RUNNING}).ready == []
    assert graph.decide({"c": true, "slow": RUNNING}).ready == ["m"]
    assert graph.decide({"c": false, "slow": SKIPPED}).skip == ["m"]


def test_wait_for_defaults_to_all_and_rejects_other_words() -> None:
    definition = parse_definition({"name": "wf", "nodes": [{"id": "a", "type": "transform"}]})
    assert definition.nodes[0].wait_for == "all"
    with pytest.raises(DefinitionError) as raised:
        parse_definition(
            {"name": "wf", "nodes": [{"id": "a", "type": "transform", "wait_for": "any"}]}
        )
    assert raised.value.problems[0].path == "wait_for"
