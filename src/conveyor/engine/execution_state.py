"""The in-memory state of one execution while a worker holds its lease, rebuilt from the
stored steps on every claim."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from conveyor.engine.definition import Node, WorkflowDefinition
from conveyor.engine.graph import PENDING, Graph, NodeState, NodeStatus
from conveyor.engine.interfaces import ClaimedExecution, Signal, StepRecord
from conveyor.engine.secret_scope import SecretScope
from conveyor.engine.state import StepStatus
from conveyor.engine.steps import Outcome
from conveyor.engine.templates import TemplateContext
from conveyor.nodes.base import NetworkPolicy

NEVER = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass
class Timer:
    """Something a node waits for: a time ("wait"), a retry ("retry"), or a signal
    ("signal", which fails the step at ``due`` unless ``due`` is NEVER)."""

    due: datetime
    kind: str
    signal: str | None = None


@dataclass(frozen=True)
class Stopped:
    """A step asked to end the execution (the ``stop`` node): how and why."""

    node_id: str
    status: str
    message: str


@dataclass
class Control:
    """Requests from outside the runner, set by the worker."""

    cancel: bool = False
    pause: bool = False
    drain: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    signals_changed: bool = False

    def poke(self) -> None:
        self.wake.set()


@dataclass
class ExecutionState:
    execution: ClaimedExecution
    definition: WorkflowDefinition
    graph: Graph
    states: dict[str, NodeStatus] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    tasks: dict[asyncio.Task[Outcome], str] = field(default_factory=dict)
    timers: dict[str, Timer] = field(default_factory=dict)
    waiting_output: dict[str, Any] = field(default_factory=dict)
    retry_now: list[str] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    templates: TemplateContext | None = None  # made on the first render
    secrets: SecretScope | None = None  # the credentials this run may use
    network: NetworkPolicy | None = None  # where its steps may connect (None: the registry's)
    # Nodes whose type is unsafe to repeat (``NodeType.repeatable`` false).
    unrepeatable: frozenset[str] = frozenset()
    failure: dict[str, Any] | None = None
    stopped: Stopped | None = None
    started: int = 0  # attempts started so far (the last step index given)
    step_index: dict[str, int] = field(default_factory=dict)  # of each node's latest attempt

    def begin(self, node_id: str) -> int:
        """The step index of an attempt of ``node_id`` starting now."""
        self.started += 1
        self.step_index[node_id] = self.started
        return self.started

    def node(self, node_id: str) -> Node:
        return self.definition.node(node_id)

    def next_due(self) -> datetime | None:
        return min((t.due for t in self.timers.values()), default=None)

    def all_finished(self) -> bool:
        """Every node succeeded, failed or was skipped (nothing pending, running or due)."""
        return not self.retry_now and all(
            self.states.get(n, PENDING).finished for n in self.graph.node_ids
        )

    def signal_waiters(self) -> dict[str, str]:
        return {n: t.signal for n, t in self.timers.items() if t.signal is not None}


def restore(state: ExecutionState) -> None:
    for record in state.execution.steps.values():
        state.attempts[record.node_id] = record.attempt
        if record.index is not None:
            # A node's latest attempt started after its earlier ones: the largest index
            # among latest attempts is the largest of the execution.
            state.step_index[record.node_id] = record.index
            state.started = max(state.started, record.index)
        _restore_node(state, record)
    state.signals = list(state.execution.signals)


def _restore_node(state: ExecutionState, record: StepRecord) -> None:
    """Rebuild a node's scheduler state from its latest stored attempt."""
    node_id = record.node_id
    if record.status == StepStatus.SUCCEEDED:
        state.states[node_id] = NodeStatus(NodeState.SUCCEEDED, record.branch)
        state.nodes[node_id] = {"status": "succeeded", "output": record.output}
    elif record.status == StepStatus.SKIPPED:
        state.states[node_id] = NodeStatus(NodeState.SKIPPED)
        state.nodes[node_id] = {"status": "skipped", "output": None}
    elif record.status == StepStatus.WAITING:
        state.states[node_id] = NodeStatus(NodeState.WAITING)
        if record.wait_signal is not None:
            state.timers[node_id] = Timer(record.wait_until or NEVER, "signal", record.wait_signal)
        else:
            state.timers[node_id] = Timer(record.wait_until or NEVER, "wait")
        state.waiting_output[node_id] = record.output
    elif record.wait_until is not None and record.status in (
        StepStatus.FAILED,
        StepStatus.INTERRUPTED,
    ):
        state.states[node_id] = NodeStatus(NodeState.RUNNING)
        state.timers[node_id] = Timer(record.wait_until, "retry")
    elif record.status in (StepStatus.FAILED, StepStatus.INTERRUPTED):
        # Failed for good: an interrupted at-most-once attempt is as final as a failure,
        # however many recoveries follow (G3); dependents follow its recorded outcome.
        state.states[node_id] = NodeStatus(NodeState.FAILED, continued=record.continued)
        state.nodes[node_id] = {"status": "failed", "output": record.output, "error": record.error}
    elif record.status == StepStatus.RUNNING:
        state.states[node_id] = NodeStatus(NodeState.RUNNING)
