"""The runner: drives one claimed execution from its stored state to a final or waiting status.

Each pass of the loop writes one ``Changes`` (finished steps, the steps they make ready,
skips, events, counters) in one lease-fenced transaction, and only then starts the new steps,
so a step's output is committed before any dependent starts and every start is on record.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from conveyor.engine.definition import ErrorStrategy, Node, WorkflowDefinition, parse_definition
from conveyor.engine.graph import Graph, NodeState, NodeStatus
from conveyor.engine.interfaces import (
    Changes,
    ClaimedExecution,
    Clock,
    ExecutionStore,
    StepFinish,
    StepRecord,
    StepStart,
)
from conveyor.engine.retry import StepFailure, effective_attempts, next_retry
from conveyor.engine.state import ExecutionStatus, StepStatus
from conveyor.engine.steps import Outcome, failed, run_attempt
from conveyor.engine.templates import TemplateProblem, render
from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext
from conveyor.nodes.registry import Registry

log = logging.getLogger(__name__)
FOREVER = timedelta.max


@dataclass
class _Timer:
    due: datetime
    kind: str  # "retry" or "wait"


@dataclass
class _Run:
    """The in-memory state of one execution while this worker holds its lease."""

    execution: ClaimedExecution
    definition: WorkflowDefinition
    graph: Graph
    states: dict[str, NodeStatus] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    tasks: dict[asyncio.Task[Outcome], str] = field(default_factory=dict)
    timers: dict[str, _Timer] = field(default_factory=dict)
    waiting_output: dict[str, Any] = field(default_factory=dict)
    retry_now: list[str] = field(default_factory=list)
    failure: dict[str, Any] | None = None

    def node(self, node_id: str) -> Node:
        return self.definition.node(node_id)


class Runner:
    """Runs claimed executions. ``hold_timers_up_to``: a retry or wait due later than this
    releases the execution (status ``waiting``) instead of holding the worker slot."""

    def __init__(
        self,
        store: ExecutionStore,
        registry: Registry,
        clock: Clock,
        *,
        hold_timers_up_to: timedelta = FOREVER,
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.hold_timers_up_to = hold_timers_up_to
        self._definitions: dict[tuple[str, int], tuple[WorkflowDefinition, Graph]] = {}
        self.cancel_events: dict[str, asyncio.Event] = {}

    def request_cancel(self, execution_id: str) -> None:
        event = self.cancel_events.get(execution_id)
        if event is not None:
            event.set()

    async def run(self, execution: ClaimedExecution) -> ExecutionStatus:
        run = self._prepare(execution)
        cancel = self.cancel_events.setdefault(execution.id, asyncio.Event())
        if execution.cancel_requested:
            cancel.set()
        try:
            return await self._loop(run, cancel)
        except asyncio.CancelledError:
            await asyncio.shield(self._abort(run, ExecutionStatus.CANCELLED, "cancelled"))
            raise
        finally:
            self.cancel_events.pop(execution.id, None)
            await _cancel_tasks(run)

    def _prepare(self, execution: ClaimedExecution) -> _Run:
        key = (execution.workflow_id, execution.version)
        if key not in self._definitions:
            definition = parse_definition(execution.definition)
            self._definitions[key] = (definition, Graph(definition))
        definition, graph = self._definitions[key]
        run = _Run(execution, definition, graph)
        for record in execution.steps.values():
            run.attempts[record.node_id] = record.attempt
            _restore(run, record)
        return run

    async def _loop(self, run: _Run, cancel: asyncio.Event) -> ExecutionStatus:
        changes = self._resume(run)
        while True:
            if cancel.is_set():
                return await self._abort(run, ExecutionStatus.CANCELLED, "cancelled", changes)
            now = self.clock.now()
            deadline = run.execution.deadline_at
            if deadline is not None and now >= deadline:
                return await self._abort(
                    run, ExecutionStatus.TIMED_OUT, "execution timed out", changes
                )
            self._fire_timers(run, now, changes)
            starts = self._start_ready(run, changes)
            if run.failure is not None:
                return await self._abort(run, ExecutionStatus.FAILED, None, changes)
            if not run.tasks and not starts and not run.timers and not run.retry_now:
                return await self._finish(run, changes)
            due = min((t.due for t in run.timers.values()), default=None)
            if (
                not run.tasks
                and not starts
                and due is not None
                and (due - now > self.hold_timers_up_to)
            ):
                return await self._release_waiting(run, due, changes)
            if changes:
                await self.store.apply(run.execution, changes)
                changes = Changes()
            for start, prepared in starts:
                self._spawn(run, start, prepared)
            await self._wait(run, cancel, due, deadline)
            for task in [t for t in run.tasks if t.done()]:
                node_id = run.tasks.pop(task)
                self._record(run, node_id, task.result(), changes)

    def _resume(self, run: _Run) -> Changes:
        changes = Changes()
        execution = run.execution
        now = self.clock.now()
        if execution.status != ExecutionStatus.RUNNING:
            changes.status = ExecutionStatus.RUNNING
        if execution.first_claim or execution.started_at is None:
            if execution.started_at is None:
                changes.started_at = execution.started_at = now
            timeout = run.definition.settings.execution_timeout
            if timeout is not None and execution.deadline_at is None:
                changes.deadline_at = execution.deadline_at = execution.started_at + timeout
            changes.events.append(("execution.started", {}))
        elif execution.recoveries:
            changes.events.append(("execution.resumed", {"recoveries": execution.recoveries}))
        for record in execution.steps.values():
            if record.status == StepStatus.RUNNING:
                self._interrupted(run, record, changes)
        return changes

    def _interrupted(self, run: _Run, record: StepRecord, changes: Changes) -> None:
        """A step that was in flight when the previous owner stopped: retry or fail it."""
        interrupted = NodeError(
            "the worker running this step stopped before it finished",
            non_retryable=self._max_attempts(run, record.node_id) == 1,
        )
        outcome = failed(interrupted)
        outcome.failure = StepFailure("Interrupted", interrupted.non_retryable)
        self._failure(run, record.node_id, outcome, changes, immediate=True)

    def _fire_timers(self, run: _Run, now: datetime, changes: Changes) -> None:
        for node_id, timer in list(run.timers.items()):
            if timer.due > now:
                continue
            del run.timers[node_id]
            if timer.kind == "wait":
                output = run.waiting_output.pop(node_id, None)
                self._succeeded(run, node_id, Outcome(output=output), changes, waited=True)
            else:
                run.retry_now.append(node_id)

    def _start_ready(self, run: _Run, changes: Changes) -> list[tuple[StepStart, Any]]:
        if run.failure is not None:
            return []
        decision = run.graph.decide(run.states)
        for node_id in decision.skip:
            run.states[node_id] = NodeStatus(NodeState.SKIPPED)
            run.nodes[node_id] = {"status": "skipped", "output": None}
            changes.skipped.append((node_id, run.node(node_id).type))
            changes.count("steps_skipped")
            changes.events.append(("step.skipped", {"node_id": node_id}))
        ready = decision.ready + run.retry_now
        run.retry_now = []
        starts = []
        now = self.clock.now()
        for node_id in ready:
            node = run.node(node_id)
            attempt = run.attempts.get(node_id, 0) + 1
            run.attempts[node_id] = attempt
            prepared = self._render(run, node)
            start = StepStart(
                node_id,
                node.type,
                attempt,
                None if isinstance(prepared, Exception) else prepared,
                now,
            )
            run.states[node_id] = NodeStatus(NodeState.RUNNING)
            changes.started.append(start)
            changes.count("steps_running")
            changes.events.append(("step.started", {"node_id": node_id, "attempt": attempt}))
            starts.append((start, prepared))
        return starts

    def _render(self, run: _Run, node: Node) -> Any:
        execution = run.execution
        context = {
            "trigger": execution.input,
            "input": execution.input,
            "nodes": run.nodes,
            "execution": {
                "id": execution.id,
                "workflow": execution.workflow_name,
                "version": execution.version,
                "trigger_type": execution.trigger_type,
            },
            "workflow": {
                "id": execution.workflow_id,
                "name": execution.workflow_name,
                "version": execution.version,
            },
        }
        try:
            return render(node.config, context, "config")
        except TemplateProblem as exc:
            return NodeError(str(exc), non_retryable=True)

    def _spawn(self, run: _Run, start: StepStart, prepared: Any) -> None:
        node = run.node(start.node_id)
        execution = run.execution
        ctx = NodeContext(
            execution_id=execution.id,
            workflow_id=execution.workflow_id,
            node_id=node.id,
            attempt=start.attempt,
            services=self.store,
            clock=self.clock.now,
        )
        node_type = self.registry.get(node.type)
        if node_type is None:
            coro = _raise(
                NodeError(
                    f"node type '{node.type}' is not registered in this worker", non_retryable=True
                ),
                ctx,
            )
        elif isinstance(prepared, Exception):
            coro = _raise(prepared, ctx)
        else:
            coro = run_attempt(node_type, ctx, prepared, run.definition.timeout(node))
        task = asyncio.create_task(coro, name=f"{execution.id}:{node.id}:{start.attempt}")
        run.tasks[task] = node.id

    async def _wait(
        self,
        run: _Run,
        cancel: asyncio.Event,
        due: datetime | None,
        deadline: datetime | None,
    ) -> None:
        if run.retry_now:
            return
        waiters: set[asyncio.Task[Any]] = set(run.tasks)
        cancel_waiter = asyncio.create_task(cancel.wait())
        waiters.add(cancel_waiter)
        wake = min((t for t in (due, deadline) if t is not None), default=None)
        timer = None
        if wake is not None:
            delay = (wake - self.clock.now()).total_seconds()
            timer = asyncio.create_task(self.clock.sleep(delay))
            waiters.add(timer)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for helper in (cancel_waiter, timer):
                if helper is not None and not helper.done():
                    helper.cancel()

    def _record(self, run: _Run, node_id: str, outcome: Outcome, changes: Changes) -> None:
        changes.count("steps_running", -1)
        for name in ("tokens", "api_calls"):
            if outcome.usage.get(name):
                changes.count(f"usage_{name}", outcome.usage[name])
        if not outcome.ok:
            self._failure(run, node_id, outcome, changes)
        elif outcome.wait_until is not None and outcome.wait_until > self.clock.now():
            run.timers[node_id] = _Timer(outcome.wait_until, "wait")
            run.waiting_output[node_id] = outcome.output
            run.states[node_id] = NodeStatus(NodeState.WAITING)
            changes.finished.append(
                StepFinish(
                    node_id,
                    run.attempts[node_id],
                    StepStatus.WAITING,
                    self.clock.now(),
                    output=outcome.output,
                    logs=outcome.logs,
                    wait_until=outcome.wait_until,
                    usage=outcome.usage,
                )
            )
            changes.events.append(
                ("step.waiting", {"node_id": node_id, "until": outcome.wait_until.isoformat()})
            )
        else:
            self._succeeded(run, node_id, outcome, changes)

    def _succeeded(
        self, run: _Run, node_id: str, outcome: Outcome, changes: Changes, waited: bool = False
    ) -> None:
        attempt = run.attempts[node_id]
        run.states[node_id] = NodeStatus(NodeState.SUCCEEDED, outcome.branch)
        run.nodes[node_id] = {"status": "succeeded", "output": outcome.output}
        changes.finished.append(
            StepFinish(
                node_id,
                attempt,
                StepStatus.SUCCEEDED,
                self.clock.now(),
                output=outcome.output,
                logs=None if waited else outcome.logs,
                branch=outcome.branch,
                usage={} if waited else outcome.usage,
            )
        )
        changes.count("steps_succeeded")
        event: dict[str, Any] = {"node_id": node_id, "attempt": attempt}
        if outcome.branch is not None:
            event["branch"] = outcome.branch
        changes.events.append(("step.succeeded", event))

    def _max_attempts(self, run: _Run, node_id: str) -> int:
        node = run.node(node_id)
        return effective_attempts(
            run.definition.retry_policy(node),
            run.definition.error_strategy(node),
            node.retry is not None,
        )

    def _failure(
        self,
        run: _Run,
        node_id: str,
        outcome: Outcome,
        changes: Changes,
        immediate: bool = False,
    ) -> None:
        node = run.node(node_id)
        attempt = run.attempts[node_id]
        assert outcome.failure is not None and outcome.error is not None
        delay = next_retry(
            run.definition.retry_policy(node),
            self._max_attempts(run, node_id),
            attempt,
            outcome.failure,
        )
        now = self.clock.now()
        status = StepStatus.INTERRUPTED if immediate else StepStatus.FAILED
        if delay is not None:
            due = now if immediate else now + delay
            changes.finished.append(
                StepFinish(
                    node_id,
                    attempt,
                    status,
                    now,
                    error=outcome.error,
                    logs=outcome.logs,
                    wait_until=due,
                    usage=outcome.usage,
                )
            )
            changes.events.append(
                (
                    "step.retrying",
                    {
                        "node_id": node_id,
                        "attempt": attempt,
                        "error": outcome.error,
                        "retry_at": due.isoformat(),
                        "delay_seconds": (due - now).total_seconds(),
                    },
                )
            )
            run.states[node_id] = NodeStatus(NodeState.RUNNING)
            if immediate:
                run.retry_now.append(node_id)
            else:
                run.timers[node_id] = _Timer(due, "retry")
            return
        strategy = run.definition.error_strategy(node)
        continued = strategy == ErrorStrategy.CONTINUE
        output = {"error": outcome.error} if continued else None
        changes.finished.append(
            StepFinish(
                node_id,
                attempt,
                status,
                now,
                output=output,
                error=outcome.error,
                logs=outcome.logs,
                continued=continued,
                usage=outcome.usage,
            )
        )
        changes.count("steps_failed")
        changes.events.append(
            (
                "step.failed",
                {
                    "node_id": node_id,
                    "attempt": attempt,
                    "error": outcome.error,
                    "continued": continued,
                },
            )
        )
        run.states[node_id] = NodeStatus(NodeState.FAILED, continued=continued)
        run.nodes[node_id] = {"status": "failed", "output": output, "error": outcome.error}
        if not continued and run.failure is None:
            run.failure = {"node_id": node_id, **outcome.error}

    async def _finish(self, run: _Run, changes: Changes) -> ExecutionStatus:
        result = {
            n: run.nodes[n]["output"]
            for n in run.graph.sinks()
            if run.states.get(n, NodeStatus(NodeState.PENDING)).state
            in (NodeState.SUCCEEDED, NodeState.FAILED)
        }
        return await self._final(run, ExecutionStatus.SUCCEEDED, changes, result=result)

    async def _abort(
        self,
        run: _Run,
        status: ExecutionStatus,
        reason: str | None,
        changes: Changes | None = None,
    ) -> ExecutionStatus:
        changes = changes or Changes()
        now = self.clock.now()
        for _task, node_id in await _cancel_tasks(run):
            changes.count("steps_running", -1)
            changes.finished.append(
                StepFinish(
                    node_id,
                    run.attempts[node_id],
                    StepStatus.CANCELLED,
                    now,
                    error={"type": "Cancelled", "message": reason or "execution stopped"},
                )
            )
            changes.events.append(("step.cancelled", {"node_id": node_id}))
        error = (
            run.failure
            if status == ExecutionStatus.FAILED
            else {"type": status.value, "message": reason}
        )
        return await self._final(run, status, changes, error=error)

    async def _final(
        self,
        run: _Run,
        status: ExecutionStatus,
        changes: Changes,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> ExecutionStatus:
        run.timers.clear()
        changes.status = status
        changes.finished_at = self.clock.now()
        changes.result = result
        changes.error = error
        changes.release = True
        payload: dict[str, Any] = {"status": status.value}
        if error is not None:
            payload["error"] = error
        changes.events.append((f"execution.{status.value}", payload))
        await self.store.apply(run.execution, changes)
        return status

    async def _release_waiting(self, run: _Run, due: datetime, changes: Changes) -> ExecutionStatus:
        kinds = {t.kind for t in run.timers.values() if t.due == due}
        reason = (
            f"waiting until {due.isoformat()}"
            if "wait" in kinds
            else f"retry backoff until {due.isoformat()}"
        )
        changes.status = ExecutionStatus.WAITING
        changes.available_at = due
        changes.wait_reason = reason
        changes.release = True
        changes.events.append(("execution.waiting", {"until": due.isoformat(), "reason": reason}))
        await self.store.apply(run.execution, changes)
        return ExecutionStatus.WAITING


def _restore(run: _Run, record: StepRecord) -> None:
    """Rebuild a node's scheduler state from its latest stored attempt."""
    node_id = record.node_id
    if record.status == StepStatus.SUCCEEDED:
        run.states[node_id] = NodeStatus(NodeState.SUCCEEDED, record.branch)
        run.nodes[node_id] = {"status": "succeeded", "output": record.output}
    elif record.status == StepStatus.SKIPPED:
        run.states[node_id] = NodeStatus(NodeState.SKIPPED)
        run.nodes[node_id] = {"status": "skipped", "output": None}
    elif record.status == StepStatus.WAITING and record.wait_until is not None:
        run.states[node_id] = NodeStatus(NodeState.WAITING)
        run.timers[node_id] = _Timer(record.wait_until, "wait")
        run.waiting_output[node_id] = record.output
    elif record.wait_until is not None and record.status in (
        StepStatus.FAILED,
        StepStatus.INTERRUPTED,
    ):
        run.states[node_id] = NodeStatus(NodeState.RUNNING)
        run.timers[node_id] = _Timer(record.wait_until, "retry")
    elif record.status == StepStatus.FAILED:
        run.states[node_id] = NodeStatus(NodeState.FAILED, continued=record.continued)
        run.nodes[node_id] = {"status": "failed", "output": record.output, "error": record.error}
    elif record.status == StepStatus.RUNNING:
        run.states[node_id] = NodeStatus(NodeState.RUNNING)


async def _raise(exc: Exception, ctx: NodeContext) -> Outcome:
    return failed(exc, ctx)


async def _cancel_tasks(run: _Run) -> list[tuple[asyncio.Task[Outcome], str]]:
    pending = [(t, n) for t, n in run.tasks.items() if not t.done()]
    for task, _ in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*(t for t, _ in pending), return_exceptions=True)
    run.tasks.clear()
    return pending
