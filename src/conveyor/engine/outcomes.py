"""Pure transitions: what an outcome, a due timer or a signal does to an execution's state
and which ``Changes`` record it. No I/O and no clock reads: ``now`` is passed in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.engine.definition import ErrorStrategy
from conveyor.engine.execution_state import NEVER, ExecutionState, Stopped, Timer
from conveyor.engine.graph import NodeState, NodeStatus
from conveyor.engine.interfaces import Changes, StepFinish, StepRecord
from conveyor.engine.retry import StepFailure, effective_attempts, next_retry
from conveyor.engine.state import StepStatus
from conveyor.engine.steps import Outcome, failed
from conveyor.errors import NodeError, NodeTimeout


def max_attempts(state: ExecutionState, node_id: str) -> int:
    node = state.node(node_id)
    return effective_attempts(
        state.definition.retry_policy(node),
        state.definition.error_strategy(node),
        state.definition.explicit_retry(node),
        node_id not in state.unrepeatable,
    )


def record(
    state: ExecutionState, node_id: str, outcome: Outcome, changes: Changes, now: datetime
) -> None:
    """A step's attempt ended with ``outcome``."""
    changes.count("steps_running", -1)
    for name in ("tokens", "api_calls"):
        if outcome.usage.get(name):
            changes.count(f"usage_{name}", outcome.usage[name])
    if not outcome.ok:
        failure(state, node_id, outcome, changes, now)
    elif outcome.stop is not None:
        succeeded(state, node_id, outcome, changes, now)
        if state.stopped is None:
            state.stopped = Stopped(node_id, outcome.stop.status, outcome.stop.message)
    elif outcome.wait_signal is not None:
        _wait(
            state,
            node_id,
            outcome,
            changes,
            now,
            Timer(outcome.wait_until or NEVER, "signal", outcome.wait_signal),
        )
    elif outcome.wait_until is not None and outcome.wait_until > now:
        _wait(state, node_id, outcome, changes, now, Timer(outcome.wait_until, "wait"))
    else:
        succeeded(state, node_id, outcome, changes, now)


def _wait(
    state: ExecutionState,
    node_id: str,
    outcome: Outcome,
    changes: Changes,
    now: datetime,
    timer: Timer,
) -> None:
    state.timers[node_id] = timer
    state.waiting_output[node_id] = outcome.output
    state.states[node_id] = NodeStatus(NodeState.WAITING)
    until = None if timer.due == NEVER else timer.due
    changes.finished.append(
        StepFinish(
            node_id,
            state.attempts[node_id],
            StepStatus.WAITING,
            now,
            output=outcome.output,
            logs=outcome.logs,
            wait_until=until,
            wait_signal=timer.signal,
            usage=outcome.usage,
        )
    )
    event: dict[str, Any] = {"node_id": node_id}
    if until is not None:
        event["until"] = until.isoformat()
    if timer.signal is not None:
        event["signal"] = timer.signal
    changes.events.append(("step.waiting", event))


def succeeded(
    state: ExecutionState,
    node_id: str,
    outcome: Outcome,
    changes: Changes,
    now: datetime,
    waited: bool = False,
) -> None:
    attempt = state.attempts[node_id]
    state.states[node_id] = NodeStatus(NodeState.SUCCEEDED, outcome.branch)
    state.nodes[node_id] = {"status": "succeeded", "output": outcome.output}
    changes.finished.append(
        StepFinish(
            node_id,
            attempt,
            StepStatus.SUCCEEDED,
            now,
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


def failure(
    state: ExecutionState,
    node_id: str,
    outcome: Outcome,
    changes: Changes,
    now: datetime,
    immediate: bool = False,
) -> None:
    """A failed attempt: schedule the next one, or fail the node (continue or stop)."""
    node = state.node(node_id)
    attempt = state.attempts[node_id]
    assert outcome.failure is not None and outcome.error is not None
    if node_id in state.step_index:
        outcome.error = {**outcome.error, "step_index": state.step_index[node_id]}
    delay = next_retry(
        state.definition.retry_policy(node), max_attempts(state, node_id), attempt, outcome.failure
    )
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
        state.states[node_id] = NodeStatus(NodeState.RUNNING)
        if immediate:
            state.retry_now.append(node_id)
        else:
            state.timers[node_id] = Timer(due, "retry")
        return
    continued = state.definition.error_strategy(node) == ErrorStrategy.CONTINUE
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
    state.states[node_id] = NodeStatus(NodeState.FAILED, continued=continued)
    state.nodes[node_id] = {"status": "failed", "output": output, "error": outcome.error}
    if not continued and state.failure is None:
        state.failure = {"node_id": node_id, **outcome.error}


def interrupted(state: ExecutionState, step: StepRecord, changes: Changes, now: datetime) -> None:
    """A step in flight when its previous owner stopped: a new attempt, or failure when the
    node allows a single attempt (at-most-once)."""
    single = max_attempts(state, step.node_id) == 1
    error = NodeError(
        "the worker running this step stopped before it finished", non_retryable=single
    )
    outcome = failed(error)
    outcome.failure = StepFailure("Interrupted", single)
    changes.count("steps_running", -1)
    failure(state, step.node_id, outcome, changes, now, immediate=True)


def fire_timers(state: ExecutionState, changes: Changes, now: datetime) -> None:
    for node_id, timer in list(state.timers.items()):
        if timer.due > now:
            continue
        del state.timers[node_id]
        if timer.kind == "wait":
            output = state.waiting_output.pop(node_id, None)
            succeeded(state, node_id, Outcome(output=output), changes, now, waited=True)
        elif timer.kind == "signal":
            state.waiting_output.pop(node_id, None)
            timeout = NodeTimeout(f"no signal '{timer.signal}' arrived in time", non_retryable=True)
            failure(state, node_id, failed(timeout), changes, now)
        else:
            state.retry_now.append(node_id)


def match_signals(state: ExecutionState, changes: Changes, now: datetime) -> None:
    """Hand each waiting node the oldest unconsumed signal of its name."""
    waiters = state.signal_waiters()
    if not waiters or not state.signals:
        return
    remaining = []
    for signal in state.signals:
        node_id = next((n for n, name in waiters.items() if name == signal.name), None)
        if node_id is None:
            remaining.append(signal)
            continue
        del waiters[node_id]
        del state.timers[node_id]
        state.waiting_output.pop(node_id, None)
        changes.consumed_signals.append((signal.id, node_id))
        _signalled(state, node_id, signal.name, signal.data, changes, now)
    state.signals = remaining


def _signalled(
    state: ExecutionState, node_id: str, name: str, data: Any, changes: Changes, now: datetime
) -> None:
    if name.startswith("child:") and isinstance(data, dict) and data.get("status") != ("succeeded"):
        error = data.get("error") or {}
        message = f"child execution {data.get('execution_id')} ended {data.get('status')}"
        if error.get("message"):
            message += f": {error['message']}"
        failure(
            state,
            node_id,
            failed(NodeError(message, non_retryable=True, details={"child": data})),
            changes,
            now,
        )
        return
    output = data.get("result") if name.startswith("child:") and isinstance(data, dict) else data
    succeeded(state, node_id, Outcome(output=output), changes, now, waited=True)


def result_of(state: ExecutionState) -> dict[str, Any]:
    """The outputs of the finished sink nodes, by node id."""
    return {
        n: state.nodes[n]["output"]
        for n in state.graph.sinks()
        if state.states.get(n, NodeStatus(NodeState.PENDING)).state
        in (NodeState.SUCCEEDED, NodeState.FAILED)
    }
