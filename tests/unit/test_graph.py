"""Unit tests for the scheduler's pure core: readiness, skip propagation, cycles, ancestry."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.engine.definition import parse_definition
from conveyor.engine.graph import (
    Graph,
    NodeState,
    NodeStatus,
    find_cycle,
    topological_order,
)

SUCCEEDED = NodeStatus(NodeState.SUCCEEDED)
RUNNING = NodeStatus(NodeState.RUNNING)
WAITING = NodeStatus(NodeState.WAITING)
SKIPPED = NodeStatus(NodeState.SKIPPED)
FAILED = NodeStatus(NodeState.FAILED)
FAILED_CONTINUED = NodeStatus(NodeState.FAILED, continued=True)


def _graph(*nodes: tuple[str, Any], edges: list[dict[str, Any]] | None = None) -> Graph:
    """Nodes as (id, needs); the type does not matter to the graph."""
    return Graph(
        parse_definition(
            {
                "name": "wf",
                "nodes": [{"id": i, "type": "transform", "needs": needs} for i, needs in nodes],
                "edges": edges or [],
            }
        )
    )


def _branch(label: str) -> NodeStatus:
    return NodeStatus(NodeState.SUCCEEDED, branch=label)


DIAMOND = _graph(("a", []), ("b", "a"), ("c", "a"), ("d", ["b", "c"]))

# c is a condition: t1 -> t2 below "true", f1 -> f2 -> f3 below "false", j joins t1 and f1.
BRANCHES = _graph(
    ("c", []),
    ("t1", "c.true"),
    ("t2", "t1"),
    ("f1", "c.false"),
    ("f2", "f1"),
    ("f3", "f2"),
    ("j", ["t1", "f1"]),
)


def test_roots_are_ready_at_the_start() -> None:
    graph = _graph(("a", []), ("b", []), ("c", ["a", "b"]))
    decision = graph.decide({})
    assert decision.ready == ["a", "b"]
    assert decision.skip == []


def test_a_running_node_is_not_ready_again() -> None:
    decision = DIAMOND.decide({"a": RUNNING})
    assert decision.ready == []
    assert decision.skip == []


def test_successors_become_ready_when_their_predecessor_succeeds() -> None:
    assert DIAMOND.decide({"a": SUCCEEDED}).ready == ["b", "c"]


@pytest.mark.parametrize("other", [NodeStatus(NodeState.PENDING), RUNNING, WAITING])
def test_a_join_waits_for_every_predecessor(other: NodeStatus) -> None:
    decision = DIAMOND.decide({"a": SUCCEEDED, "b": SUCCEEDED, "c": other})
    assert "d" not in decision.ready
    assert "d" not in decision.skip


def test_a_join_runs_once_when_all_predecessors_finished() -> None:
    states = {"a": SUCCEEDED, "b": SUCCEEDED, "c": SUCCEEDED}
    assert DIAMOND.decide(states).ready == ["d"]
    assert DIAMOND.decide({**states, "d": RUNNING}).ready == []
    assert DIAMOND.decide({**states, "d": SUCCEEDED}).ready == []


def test_finished_nodes_are_neither_ready_nor_skipped() -> None:
    states = dict.fromkeys(("a", "b", "c", "d"), SUCCEEDED)
    decision = DIAMOND.decide(states)
    assert decision.ready == []
    assert decision.skip == []


def test_a_branch_not_taken_is_skipped_all_the_way_down_in_one_call() -> None:
    decision = BRANCHES.decide({"c": _branch("true")})
    assert decision.ready == ["t1"]
    assert decision.skip == ["f1", "f2", "f3"]


def test_the_taken_branch_only_runs_its_own_nodes() -> None:
    decision = BRANCHES.decide({"c": _branch("false")})
    assert decision.ready == ["f1"]
    assert decision.skip == ["t1", "t2"]


def test_a_join_of_a_skipped_branch_and_a_live_branch_runs() -> None:
    decision = BRANCHES.decide({"c": _branch("true"), "t1": SUCCEEDED})
    assert "j" in decision.ready
    assert "f1" in decision.skip
    assert "j" not in decision.skip


def test_a_join_of_a_skipped_branch_waits_for_the_live_branch() -> None:
    decision = BRANCHES.decide({"c": _branch("true"), "t1": RUNNING})
    assert "j" not in decision.ready
    assert "j" not in decision.skip


def test_a_join_of_only_skipped_branches_is_skipped() -> None:
    graph = _graph(("a", []), ("b", "a"), ("c", "a"), ("d", ["b", "c"]))
    decision = graph.decide({"a": SUCCEEDED, "b": SKIPPED, "c": SKIPPED})
    assert decision.skip == ["d"]


def test_decide_does_not_modify_the_given_states() -> None:
    states = {"c": _branch("true")}
    BRANCHES.decide(states)
    assert states == {"c": _branch("true")}


def test_a_continued_failure_keeps_its_edges_live() -> None:
    graph = _graph(("a", []), ("b", "a"), ("c", "b"))
    decision = graph.decide({"a": FAILED_CONTINUED})
    assert decision.ready == ["b"]
    assert decision.skip == []


def test_a_failure_that_was_not_continued_fires_no_edges() -> None:
    graph = _graph(("a", []), ("b", "a"), ("c", "b"))
    decision = graph.decide({"a": FAILED})
    assert decision.ready == []
    assert decision.skip == ["b", "c"]


def test_a_continued_failure_takes_no_labelled_branch() -> None:
    decision = BRANCHES.decide({"c": FAILED_CONTINUED})
    assert decision.ready == []
    assert set(decision.skip) == {"t1", "t2", "f1", "f2", "f3", "j"}


@pytest.mark.parametrize(
    ("status", "finished", "live"),
    [
        (NodeStatus(NodeState.PENDING), False, False),
        (RUNNING, False, False),
        (WAITING, False, False),
        (SUCCEEDED, True, True),
        (FAILED, True, False),
        (FAILED_CONTINUED, True, True),
        (SKIPPED, True, False),
    ],
)
def test_status_finished_and_live(status: NodeStatus, finished: bool, live: bool) -> None:
    assert (status.finished, status.live) == (finished, live)


def test_explicit_edges_with_branches_are_honoured() -> None:
    graph = _graph(
        ("s", []),
        ("x", []),
        ("y", []),
        edges=[{"from": "s", "to": "x", "branch": "one"}, {"from": "s", "to": "y"}],
    )
    decision = graph.decide({"s": _branch("two")})
    assert decision.ready == ["y"]
    assert decision.skip == ["x"]


def test_decide_walks_in_topological_order_not_definition_order() -> None:
    graph = _graph(("d", "c"), ("c", "b"), ("b", "a"), ("a", []))
    assert topological_order(graph) == ["a", "b", "c", "d"]
    assert graph.decide({"a": FAILED}).skip == ["b", "c", "d"]


def test_sinks() -> None:
    assert DIAMOND.sinks() == ["d"]
    assert BRANCHES.sinks() == ["t2", "f3", "j"]


def test_ancestors_and_descendants() -> None:
    assert DIAMOND.ancestors("d") == {"a", "b", "c"}
    assert DIAMOND.ancestors("b") == {"a"}
    assert DIAMOND.ancestors("a") == set()
    assert DIAMOND.descendants("a") == {"b", "c", "d"}
    assert DIAMOND.descendants("c") == {"d"}
    assert DIAMOND.descendants("d") == set()


def test_siblings_are_not_ancestors() -> None:
    assert "f1" not in BRANCHES.ancestors("t2")
    assert BRANCHES.ancestors("j") == {"c", "t1", "f1"}


def test_find_cycle_returns_none_for_a_dag() -> None:
    assert find_cycle(DIAMOND) is None
    assert find_cycle(BRANCHES) is None


def test_find_cycle_on_two_nodes() -> None:
    graph = _graph(("a", "b"), ("b", "a"))
    assert find_cycle(graph) == ["a", "b", "a"]


def test_find_cycle_reports_the_cycle_path_in_edge_order() -> None:
    graph = _graph(("root", []), ("a", ["root", "c"]), ("b", "a"), ("c", "b"), ("d", "c"))
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_find_cycle_on_a_self_loop() -> None:
    assert find_cycle(_graph(("a", "a"))) == ["a", "a"]


def test_nodes_on_a_cycle_come_last_in_topological_order() -> None:
    graph = _graph(("a", "b"), ("b", "a"), ("c", []))
    assert topological_order(graph) == ["c", "a", "b"]


def test_edges_to_unknown_nodes_are_ignored_by_the_graph() -> None:
    graph = _graph(("a", "ghost"), ("b", "a"))
    assert graph.incoming["a"] == []
    assert graph.decide({}).ready == ["a"]
