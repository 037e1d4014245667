"""The runner: drives one claimed execution from its stored state to a final or waiting status.

Each pass of the loop writes one ``Changes`` (finished steps, the steps they make ready,
skips, events, counters) in one lease-fenced transaction, and only then starts the new steps,
so a step's output is committed before any dependent starts and every start is on record.
The decisions themselves are pure (``graph``, ``outcomes``); this module does the I/O.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from conveyor import failpoints
from conveyor.engine import outcomes
from conveyor.engine.definition import Node, WorkflowDefinition, parse_definition
from conveyor.engine.execution_state import NEVER, Control, ExecutionState, restore
from conveyor.engine.graph import PENDING, Graph, NodeState, NodeStatus
from conveyor.engine.interfaces import (
    Changes,
    ClaimedExecution,
    Clock,
    ExecutionStore,
    StepFinish,
    StepStart,
    user_variables,
)
from conveyor.engine.limits import DEFAULT_LIMITS, Limits
from conveyor.engine.secret_scope import ScrubbedServices, SecretScope, uses_credentials
from conveyor.engine.state import ExecutionStatus, StepStatus
from conveyor.engine.steps import Outcome, failed, run_attempt
from conveyor.engine.templates import TemplateContext, TemplateProblem, render
from conveyor.errors import NodeError
from conveyor.nodes.base import LiveSink, NetworkPolicy, NodeContext, Services, StepLog
from conveyor.nodes.catalog import literal_fields
from conveyor.nodes.registry import Registry

log = logging.getLogger(__name__)
FOREVER = timedelta.max
ALLOWLIST_SECONDS = 5.0  # a workspace's allowlist is read again after this long
PROGRESS_INTERVAL = 0.1  # seconds between two live progress messages of one node
# Parsed definitions kept per (workflow, version): a worker that has run more starts over
# (a long-running worker would otherwise keep every version it ever ran).
DEFINITIONS_KEPT = 1000
Publish = Callable[[str, str, dict[str, Any]], None]
Start = tuple[StepStart, Any]


class Runner:
    """Runs claimed executions. ``hold_timers_up_to``: a retry, wait or signal due later than
    this releases the execution (status ``waiting``) instead of holding the worker slot."""

    def __init__(
        self,
        store: ExecutionStore,
        registry: Registry,
        clock: Clock,
        services: Services,
        *,
        hold_timers_up_to: timedelta = FOREVER,
        on_innocent: Callable[[str], None] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        publish_live: Publish | None = None,
    ) -> None:
        """``on_innocent(execution_id)``: a suspect running alone finished a step, so it is
        not what killed its worker (the worker may run others beside it again).
        ``publish_live(execution_id, kind, data)``: where steps' live-only messages go."""
        self.publish_live = publish_live
        self.on_innocent = on_innocent
        self.store = store
        self.limits = limits
        self.registry = registry
        self.clock = clock
        self.services = services
        self.hold_timers_up_to = hold_timers_up_to
        self._definitions: dict[
            tuple[str, int], tuple[WorkflowDefinition, Graph, frozenset[str], bool]
        ] = {}
        self.controls: dict[str, Control] = {}
        # Each workspace's network policy, read again after ALLOWLIST_SECONDS.
        self._networks: dict[str, tuple[float, NetworkPolicy]] = {}

    def control(self, execution_id: str) -> Control | None:
        return self.controls.get(execution_id)

    def request_cancel(self, execution_id: str) -> None:
        control = self.controls.get(execution_id)
        if control is not None:
            control.cancel = True
            control.poke()

    def drain(self) -> None:
        """Shutdown: start no new step anywhere; release each execution when idle."""
        for control in self.controls.values():
            control.drain = True
            control.poke()

    async def run(self, execution: ClaimedExecution) -> ExecutionStatus:
        state = self._prepare(execution)
        control = self.controls.setdefault(execution.id, Control())
        control.cancel = control.cancel or execution.cancel_requested
        control.pause = control.pause or execution.paused
        try:
            return await self._loop(state, control)
        except asyncio.CancelledError:
            if control.drain:
                await asyncio.shield(
                    self._release(state, Changes(), ExecutionStatus.QUEUED, "worker shut down")
                )
            else:
                await asyncio.shield(self._abort(state, ExecutionStatus.CANCELLED, "cancelled"))
            raise
        finally:
            self.controls.pop(execution.id, None)
            await _cancel_tasks(state)

    async def dead_letter(self, execution: ClaimedExecution, reason: str) -> ExecutionStatus:
        """Fail an execution that keeps crashing its workers, without running anything."""
        state = self._prepare(execution)
        state.failure = {"type": "DeadLettered", "message": reason}
        changes = Changes()
        for step in execution.steps.values():
            if step.status == StepStatus.RUNNING:
                changes.count("steps_running", -1)
                changes.finished.append(
                    StepFinish(
                        step.node_id,
                        step.attempt,
                        StepStatus.INTERRUPTED,
                        self.clock.now(),
                        error={"type": "Interrupted", "message": reason},
                    )
                )
        return await self._final(state, ExecutionStatus.FAILED, changes, error=state.failure)

    def _prepare(self, execution: ClaimedExecution) -> ExecutionState:
        key = (execution.workflow_id, execution.version)
        if key not in self._definitions:
            if len(self._definitions) >= DEFINITIONS_KEPT:
                self._definitions.clear()
            definition = parse_definition(execution.definition)
            unrepeatable = frozenset(
                n.id
                for n in definition.nodes
                if (t := self.registry.get(n.type)) is not None and not t.repeatable
            )
            self._definitions[key] = (
                definition,
                Graph(definition),
                unrepeatable,
                uses_credentials(definition),
            )
        definition, graph, unrepeatable, _uses = self._definitions[key]
        state = ExecutionState(execution, definition, graph, unrepeatable=unrepeatable)
        workspace_id = execution.workspace_id
        state.secrets = SecretScope(lambda: self.services.credentials(workspace_id))
        restore(state)
        return state

    async def _network(self, workspace_id: str) -> NetworkPolicy:
        """The registry's policy narrowed by the workspace's own allowlist (cached a few
        seconds: a change reaches steps that start after it, within that time)."""
        now = time.monotonic()
        known = self._networks.get(workspace_id)
        if known is not None and known[0] > now:
            return known[1]
        base = self.registry.network
        own = await self.services.outbound_allowlist(workspace_id)
        policy = replace(base, workspace_allowlist=tuple(own)) if own else base
        self._networks[workspace_id] = (now + ALLOWLIST_SECONDS, policy)
        return policy

    def _uses_credentials(self, state: ExecutionState) -> bool:
        execution = state.execution
        known = self._definitions.get((execution.workflow_id, execution.version))
        # None: the cache started over since this execution was prepared.
        return uses_credentials(state.definition) if known is None else known[3]

    async def _loop(self, state: ExecutionState, control: Control) -> ExecutionStatus:
        state.network = await self._network(state.execution.workspace_id)
        if state.secrets is not None and self._uses_credentials(state):
            # Before the first render: templates read ``secrets``, and every write of this
            # run is redacted from here on.
            await state.secrets.load()
        changes = self._resume(state)
        while True:
            now = self.clock.now()
            deadline = state.execution.deadline_at
            ended = await self._end_early(state, control, changes, now)
            if ended is not None:
                return ended
            if control.signals_changed:
                control.signals_changed = False
                state.signals = await self.store.pending_signals(state.execution.id)
            outcomes.match_signals(state, changes, now)
            outcomes.fire_timers(state, changes, now)
            holding = control.pause or control.drain
            starts = [] if holding else self._start_ready(state, changes, now)
            if state.failure is not None:
                return await self._abort(state, ExecutionStatus.FAILED, None, changes)
            if not state.tasks and not starts:
                finished = await self._when_idle(state, control, changes, now)
                if finished is not None:
                    return finished
            if changes:
                await self._apply(state, changes)
                changes = Changes()
            for start, prepared in starts:
                await failpoints.reached("step.before_start", start.node_id)
                self._spawn(state, start, prepared, control)
            await self._wait(state, control, deadline)
            for task in [t for t in state.tasks if t.done()]:
                node_id = state.tasks.pop(task)
                await failpoints.reached("step.after_effect", node_id)
                outcome = _scrubbed(state, task.result())
                outcomes.record(state, node_id, outcome, changes, self.clock.now())

    async def _end_early(
        self, state: ExecutionState, control: Control, changes: Changes, now: datetime
    ) -> ExecutionStatus | None:
        """Cancelled, stopped by a step, or past the deadline: end the execution now."""
        if control.cancel:
            return await self._abort(state, ExecutionStatus.CANCELLED, "cancelled", changes)
        if state.stopped is not None:
            return await self._stop(state, changes)
        deadline = state.execution.deadline_at
        if deadline is not None and now >= deadline:
            return await self._abort(
                state, ExecutionStatus.TIMED_OUT, "execution timed out", changes
            )
        return None

    async def _when_idle(
        self, state: ExecutionState, control: Control, changes: Changes, now: datetime
    ) -> ExecutionStatus | None:
        """Nothing runs: finish, release (shutdown, pause, a long wait), or keep waiting."""
        if state.all_finished():
            return await self._final(
                state, ExecutionStatus.SUCCEEDED, changes, result=outcomes.result_of(state)
            )
        due = state.next_due()
        if control.drain:
            return await self._release(state, changes, ExecutionStatus.QUEUED, "worker shut down")
        if control.pause:
            return await self._release(state, changes, ExecutionStatus.WAITING, "paused")
        if due is not None and due - now > self.hold_timers_up_to:
            return await self._release(
                state, changes, ExecutionStatus.WAITING, _wait_reason(state, due), due
            )
        return None

    def _resume(self, state: ExecutionState) -> Changes:
        changes = Changes()
        execution = state.execution
        now = self.clock.now()
        if execution.status != ExecutionStatus.RUNNING:
            changes.status = ExecutionStatus.RUNNING
        if execution.started_at is None:
            changes.started_at = execution.started_at = now
        timeout = state.definition.settings.execution_timeout
        if timeout is not None and execution.deadline_at is None:
            # Also when the first claimer died before its first write (G8).
            changes.deadline_at = execution.deadline_at = execution.started_at + timeout
        if execution.first_claim or not execution.steps:
            changes.events.append(("execution.started", {}))
        if execution.recovered:
            changes.events.append(("execution.resumed", {"recoveries": execution.recoveries}))
        for step in execution.steps.values():
            if step.status == StepStatus.RUNNING:
                outcomes.interrupted(state, step, changes, now)
        return changes

    def _start_ready(self, state: ExecutionState, changes: Changes, now: datetime) -> list[Start]:
        if state.failure is not None:
            return []
        decision = state.graph.decide(state.states)
        for node_id in decision.skip:
            _skip(state, changes, node_id)
        ready = decision.ready + state.retry_now
        state.retry_now = []
        starts = []
        for node_id in ready:
            node = state.node(node_id)
            attempt = state.attempts.get(node_id, 0) + 1
            state.attempts[node_id] = attempt
            prepared = self._render(state, node)
            stored = None if isinstance(prepared, Exception) else prepared
            if stored is not None and state.secrets is not None and state.secrets.loaded:
                stored = state.secrets.scrub(stored)
            start = StepStart(node_id, node.type, attempt, stored, now, index=state.begin(node_id))
            state.states[node_id] = NodeStatus(NodeState.RUNNING)
            changes.started.append(start)
            changes.count("steps_running")
            changes.events.append(("step.started", {"node_id": node_id, "attempt": attempt}))
            starts.append((start, prepared))
        return starts

    def _render(self, state: ExecutionState, node: Node) -> Any:
        """The node's config with its templates rendered, except in the fields its type
        keeps literal (``"x-template": False``: SQL text), which are passed as written, and
        its raw fields (``NodeType.raw_config``), which the node renders itself."""
        if state.templates is None:
            state.templates = TemplateContext(_variables(state))
        node_type = self.registry.get(node.type)
        literal = literal_fields(node_type.config_model) if node_type else frozenset()
        # Raw fields (foreach's node) are rendered by the node itself, per item.
        unrendered = literal | (node_type.raw_config if node_type else frozenset())
        context = state.templates
        if node.id in state.graph.wait_for_first:
            # Started by its first input: the upstream nodes still running read as pending.
            pending = {
                n: {"status": "pending", "output": None}
                for n in state.graph.ancestors(node.id)
                if n not in state.nodes
            }
            context = TemplateContext({**context.variables, "nodes": {**pending, **state.nodes}})
        try:
            return {
                key: value if key in unrendered else render(value, context, f"config.{key}")
                for key, value in node.config.items()
            }
        except TemplateProblem as exc:
            return NodeError(str(exc), non_retryable=True)

    def _spawn(
        self, state: ExecutionState, start: StepStart, prepared: Any, control: Control
    ) -> None:
        node = state.node(start.node_id)
        execution = state.execution
        ctx = NodeContext(
            execution_id=execution.id,
            workflow_id=execution.workflow_id,
            node_id=node.id,
            attempt=start.attempt,
            services=self._services(state),
            clock=self.clock.now,
            log=StepLog(self.limits.log_lines),
            network=state.network or self.registry.network,
            node_types=self.registry.get,
            credentials=state.secrets,
            live=self._live_sink(state),
        )
        node_type = self.registry.get(node.type)
        if node_type is not None and node_type.raw_config:
            ctx.render = _renderer(state, node.id)
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
            timeout = state.definition.timeout(node)
            coro = run_attempt(node_type, ctx, prepared, timeout, self.limits)
        task = asyncio.create_task(coro, name=f"{execution.id}:{node.id}:{start.attempt}")
        task.add_done_callback(lambda _: control.poke())
        state.tasks[task] = node.id

    def _services(self, state: ExecutionState) -> Services:
        if state.secrets is None:
            return self.services
        return cast(Services, ScrubbedServices(self.services, state.secrets))

    def _live_sink(self, state: ExecutionState) -> LiveSink | None:
        """``ctx.live`` of a step: scrubbed like everything else, progress at most every
        ``PROGRESS_INTERVAL`` per node (the last of a known total always goes), and safe to
        call from a node's worker thread."""
        publish = self.publish_live
        if publish is None:
            return None
        loop = asyncio.get_running_loop()
        execution_id = state.execution.id
        last: dict[Any, float] = {}

        def send(kind: str, data: dict[str, Any]) -> None:
            if kind == "step.progress":
                now = time.monotonic()
                node_id = data.get("node_id")
                final = data.get("total") is not None and data.get("done") == data.get("total")
                if not final and now - last.get(node_id, -PROGRESS_INTERVAL) < PROGRESS_INTERVAL:
                    return
                last[node_id] = now
            scope = state.secrets
            if scope is not None and scope.loaded:
                data = scope.scrub(data)
            if _on_loop(loop):
                publish(execution_id, kind, data)
            else:
                loop.call_soon_threadsafe(publish, execution_id, kind, data)

        return send

    async def _wait(
        self, state: ExecutionState, control: Control, deadline: datetime | None
    ) -> None:
        if state.retry_now:
            return
        # A finishing step pokes ``control`` (see _spawn), so one event covers steps,
        # controls and signals; clear it first, then look, so no poke is lost.
        control.wake.clear()
        if control.cancel or control.signals_changed or any(t.done() for t in state.tasks):
            return
        wake = min(
            (t for t in (state.next_due(), deadline) if t is not None and t != NEVER), default=None
        )
        if wake is None:
            await control.wake.wait()
            return
        poke = asyncio.create_task(control.wake.wait())
        timer = asyncio.create_task(self.clock.sleep((wake - self.clock.now()).total_seconds()))
        try:
            await asyncio.wait((poke, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for helper in (poke, timer):
                if not helper.done():
                    helper.cancel()

    async def _abort(
        self,
        state: ExecutionState,
        status: ExecutionStatus,
        reason: str | None,
        changes: Changes | None = None,
    ) -> ExecutionStatus:
        changes = changes or Changes()
        await self._cancel_in_flight(state, changes, reason or "execution stopped")
        error = (
            state.failure
            if status == ExecutionStatus.FAILED
            else {"type": status.value, "message": reason}
        )
        return await self._final(state, status, changes, error=error)

    async def _stop(self, state: ExecutionState, changes: Changes) -> ExecutionStatus:
        """A step asked to end the execution: skip what has not started, cancel what runs
        or waits, and finish with the status and message it gave."""
        stopped = state.stopped
        assert stopped is not None
        for node_id in state.graph.node_ids:
            if state.states.get(node_id, PENDING).state == NodeState.PENDING:
                _skip(state, changes, node_id)
        await self._cancel_in_flight(state, changes, f"stopped by node '{stopped.node_id}'")
        status = ExecutionStatus(stopped.status)
        if status == ExecutionStatus.SUCCEEDED:
            result = {
                **outcomes.result_of(state),
                stopped.node_id: state.nodes[stopped.node_id]["output"],
            }
            return await self._final(state, status, changes, result=result)
        error = {"type": "Stopped", "message": stopped.message, "node_id": stopped.node_id}
        return await self._final(state, status, changes, error=error)

    async def _cancel_in_flight(self, state: ExecutionState, changes: Changes, reason: str) -> None:
        """Record every running and waiting step as cancelled."""
        now = self.clock.now()
        error = {"type": "Cancelled", "message": reason}
        for _task, node_id in await _cancel_tasks(state):
            changes.count("steps_running", -1)
            changes.finished.append(
                StepFinish(node_id, state.attempts[node_id], StepStatus.CANCELLED, now, error=error)
            )
            changes.events.append(("step.cancelled", {"node_id": node_id}))
        for node_id in list(state.timers):
            if state.states.get(node_id, PENDING).state == NodeState.WAITING:
                changes.finished.append(
                    StepFinish(
                        node_id, state.attempts[node_id], StepStatus.CANCELLED, now, error=error
                    )
                )
                changes.events.append(("step.cancelled", {"node_id": node_id}))

    async def _final(
        self,
        state: ExecutionState,
        status: ExecutionStatus,
        changes: Changes,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> ExecutionStatus:
        state.timers.clear()
        changes.status = status
        changes.finished_at = self.clock.now()
        changes.result = result
        changes.error = error
        changes.release = True
        payload: dict[str, Any] = {"status": status.value}
        if error is not None:
            payload["error"] = error
        changes.events.append((f"execution.{status.value}", payload))
        await failpoints.reached("final.before")
        await self._apply(state, changes)
        return status

    async def _release(
        self,
        state: ExecutionState,
        changes: Changes,
        status: ExecutionStatus,
        reason: str,
        available_at: datetime | None = None,
    ) -> ExecutionStatus:
        """Give the execution back to the queue; whoever claims it next resumes from the
        committed steps."""
        changes.status = status
        # Without a due time the execution keeps its place in line (its ``available_at``):
        # one drained by a shutdown or paused is not sent behind younger ones.
        changes.available_at = available_at
        changes.wait_reason = reason
        changes.release = True
        changes.wake_signals = sorted(set(state.signal_waiters().values()))
        event: dict[str, Any] = {"reason": reason}
        if available_at is not None and available_at != NEVER:
            event["until"] = available_at.isoformat()
        changes.events.append((f"execution.{status.value}", event))
        await self._apply(state, changes)
        return status

    async def _apply(self, state: ExecutionState, changes: Changes) -> None:
        """Commit one transition (fenced by the lease). A suspect whose step finished is
        cleared in the same transaction."""
        execution = state.execution
        innocent = execution.isolated and any(
            f.status not in (StepStatus.INTERRUPTED, StepStatus.CANCELLED) for f in changes.finished
        )
        changes.innocent = innocent
        await failpoints.reached("commit.before")
        await self.store.apply(execution, changes)
        await failpoints.reached("commit.after")
        if innocent:
            execution.isolated = False
            if self.on_innocent is not None:
                self.on_innocent(execution.id)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _scrubbed(state: ExecutionState, outcome: Outcome) -> Outcome:
    """The outcome as it may be kept: without secret values (once any were loaded)."""
    scope = state.secrets
    if scope is None or not scope.loaded or not scope.redact:
        return outcome
    outcome.output = scope.scrub(outcome.output)
    outcome.error = scope.scrub(outcome.error)
    outcome.logs = scope.scrub(outcome.logs)
    return outcome


def _variables(state: ExecutionState) -> dict[str, Any]:
    """What templates see. ``nodes`` is the state's own dict, so outputs recorded later are
    seen by the same template context."""
    execution = state.execution
    variables = {
        "trigger": execution.input,
        "input": execution.input,
        "nodes": state.nodes,
        "execution": {
            "id": execution.id,
            "workflow": execution.workflow_name,
            "version": execution.version,
            "trigger_type": execution.trigger_type,
            "user": user_variables(execution.user),
        },
        "workflow": {
            "id": execution.workflow_id,
            "name": execution.workflow_name,
            "version": execution.version,
        },
    }
    if state.secrets is not None and state.secrets.loaded:
        variables["secrets"] = state.secrets.template_values()
    return variables


def _skip(state: ExecutionState, changes: Changes, node_id: str) -> None:
    state.states[node_id] = NodeStatus(NodeState.SKIPPED)
    state.nodes[node_id] = {"status": "skipped", "output": None}
    changes.skipped.append((node_id, state.node(node_id).type))
    changes.count("steps_skipped")
    changes.events.append(("step.skipped", {"node_id": node_id}))


def _renderer(state: ExecutionState, node_id: str) -> Callable[[Any, dict[str, Any]], Any]:
    """``ctx.render`` for a node that renders raw config fields itself: the execution's
    variables plus the extra ones it passes (``item``, ``index``)."""

    def render_with(value: Any, extra: dict[str, Any]) -> Any:
        try:
            return render(value, {**_variables(state), **extra}, "config")
        except TemplateProblem as exc:
            raise NodeError(f"{node_id}: {exc}", non_retryable=True) from None

    return render_with


def _wait_reason(state: ExecutionState, due: datetime) -> str:
    kinds = {t.kind: t for t in state.timers.values() if t.due == due}
    if "signal" in kinds:
        signal = kinds["signal"].signal or ""
        what = (
            f"child execution {signal[6:]}" if signal.startswith("child:") else f"signal {signal}"
        )
        return f"waiting for {what}" + ("" if due == NEVER else f" until {due.isoformat()}")
    if "wait" in kinds:
        return f"waiting until {due.isoformat()}"
    return f"retry backoff until {due.isoformat()}"


async def _raise(exc: Exception, ctx: NodeContext) -> Outcome:
    return failed(exc, ctx)


async def _cancel_tasks(state: ExecutionState) -> list[tuple[asyncio.Task[Outcome], str]]:
    pending = [(t, n) for t, n in state.tasks.items() if not t.done()]
    for task, _ in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*(t for t, _ in pending), return_exceptions=True)
    state.tasks.clear()
    return pending
