"""The graph scheduler's pure core: readiness, skip propagation, cycles, ancestry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from conveyor.engine.definition import Edge, WaitFor, WorkflowDefinition


class NodeState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class NodeStatus:
    """A node's state as the scheduler sees it. ``live``: a finished node whose edges fire."""

    state: NodeState
    branch: str | None = None
    continued: bool = False

    @property
    def finished(self) -> bool:
        return self.state in (NodeState.SUCCEEDED, NodeState.FAILED, NodeState.SKIPPED)

    @property
    def live(self) -> bool:
        return self.state == NodeState.SUCCEEDED or (
            self.state == NodeState.FAILED and self.continued
        )


PENDING = NodeStatus(NodeState.PENDING)


@dataclass(frozen=True)
class Decision:
    ready: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)


class Graph:
    """Nodes in definition order with their incoming and outgoing edges."""

    def __init__(self, definition: WorkflowDefinition) -> None:
        self.node_ids: list[str] = [n.id for n in definition.nodes]
        self.wait_for_first = frozenset(
            n.id for n in definition.nodes if n.wait_for == WaitFor.FIRST
        )
        self.incoming: dict[str, list[Edge]] = {n: [] for n in self.node_ids}
        self.outgoing: dict[str, list[Edge]] = {n: [] for n in self.node_ids}
        for edge in definition.all_edges():
            if edge.source in self.outgoing and edge.target in self.incoming:
                self.outgoing[edge.source].append(edge)
                self.incoming[edge.target].append(edge)
        self._order = topological_order(self)

    def sinks(self) -> list[str]:
        return [n for n in self.node_ids if not self.outgoing[n]]

    def ancestors(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        stack = [e.source for e in self.incoming[node_id]]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(e.source for e in self.incoming[current])
        return seen

    def descendants(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        stack = [e.target for e in self.outgoing[node_id]]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(e.target for e in self.outgoing[current])
        return seen

    def decide(self, states: Mapping[str, NodeStatus]) -> Decision:
        """Which pending nodes can start now, and which can never run (skipped).

        A node runs when every predecessor is finished and at least one incoming edge is
        live; it is skipped when every predecessor is finished and no incoming edge is live.
        A node that waits for the ``first`` runs as soon as one incoming edge is live, and once
        (it is no longer pending when the others finish).
        Walking in topological order lets one call propagate skips all the way down.
        """
        current = dict(states)
        decision = Decision()
        for node_id in self._order:
            if current.get(node_id, PENDING).state != NodeState.PENDING:
                continue
            edges = self.incoming[node_id]
            if not edges:
                decision.ready.append(node_id)
                continue
            sources = [current.get(e.source, PENDING) for e in edges]
            live = any(_edge_live(e, s) for e, s in zip(edges, sources, strict=True))
            if live and node_id in self.wait_for_first:
                decision.ready.append(node_id)
                continue
            if not all(s.finished for s in sources):
                continue
            if live:
                decision.ready.append(node_id)
            else:
                decision.skip.append(node_id)
                current[node_id] = NodeStatus(NodeState.SKIPPED)
        return decision


def _edge_live(edge: Edge, source: NodeStatus) -> bool:
    return source.live and (edge.branch is None or edge.branch == source.branch)


def topological_order(graph: Graph) -> list[str]:
    """Kahn's algorithm, stable in definition order; nodes on a cycle come last."""
    indegree = {n: len(graph.incoming[n]) for n in graph.node_ids}
    order: list[str] = []
    queue = [n for n in graph.node_ids if indegree[n] == 0]
    while queue:
        current = queue.pop(0)
        order.append(current)
        for edge in graph.outgoing[current]:
            indegree[edge.target] -= 1
            if indegree[edge.target] == 0:
                queue.append(edge.target)
    order += [n for n in graph.node_ids if n not in set(order)]
    return order


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle as a path that starts and ends on the same node, or None."""
    color: dict[str, int] = dict.fromkeys(graph.node_ids, 0)
    parent: dict[str, str] = {}
    for root in graph.node_ids:
        if color[root]:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        color[root] = 1
        while stack:
            node_id, index = stack[-1]
            edges = graph.outgoing[node_id]
            if index >= len(edges):
                color[node_id] = 2
                stack.pop()
                continue
            stack[-1] = (node_id, index + 1)
            target = edges[index].target
            if color[target] == 1:
                cycle = [target]
                walker = node_id
                while walker != target:
                    cycle.append(walker)
                    walker = parent[walker]
                cycle.append(target)
                return list(reversed(cycle))
            if color[target] == 0:
                color[target] = 1
                parent[target] = node_id
                stack.append((target, 0))
    return None
