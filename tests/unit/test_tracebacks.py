"""The traceback kept with an unexpected exception: capped, redacted; and step indexes
continue after the largest stored one when an execution is claimed again."""

from __future__ import annotations

from datetime import UTC, datetime

from conveyor.engine.definition import parse_definition
from conveyor.engine.execution_state import ExecutionState, restore
from conveyor.engine.graph import Graph
from conveyor.engine.interfaces import ClaimedExecution, Lease, StepRecord
from conveyor.engine.state import ExecutionStatus, StepStatus
from conveyor.engine.tracebacks import MAX_CHARS, MAX_FRAMES, node_traceback
from conveyor.redaction import MARKER, Redactor, strings_in


def _deep(n: int, value: str) -> None:
    if n == 0:
        raise KeyError(value)
    _deep(n - 1, value)


def _raised(depth: int, value: str) -> BaseException:
    try:
        _deep(depth, value)
    except KeyError as exc:
        return exc
    raise AssertionError("did not raise")


def test_a_deep_traceback_keeps_its_innermost_frames_within_the_caps() -> None:
    text = node_traceback(_raised(200, "x"), Redactor())
    assert len(text) <= MAX_CHARS
    assert text.startswith("Traceback (most recent call last):\n")
    assert text.endswith("KeyError: 'x'")
    assert text.count("in _deep") <= MAX_FRAMES
    assert "frames omitted" in text


def test_a_huge_message_is_cut_from_the_front_not_the_end() -> None:
    text = node_traceback(_raised(1, "y" * 10_000), Redactor())
    assert len(text) <= MAX_CHARS
    assert text.startswith("Traceback (most recent call last):\n  ...\n")
    assert text.endswith("y'")


def test_every_long_string_of_the_config_is_redacted_longest_first() -> None:
    config = {"url": "https://api.example.com/v1?key=abcdef", "n": 3, "list": ["abcdef", "GET"]}
    redact = Redactor(strings_in(config))
    text = redact("GET https://api.example.com/v1?key=abcdef failed; abcdef rejected")
    assert text == f"GET {MARKER} failed; {MARKER} rejected"


def _claimed(steps: dict[str, StepRecord]) -> ClaimedExecution:
    definition = {
        "name": "w",
        "nodes": [{"id": n, "type": "transform", "config": {"output": 1}} for n in ("a", "b", "c")],
    }
    now = datetime.now(UTC)
    return ClaimedExecution(
        id="e",
        workspace_id="ws",
        workflow_id="wf",
        workflow_name="w",
        version=1,
        definition=definition,
        input={},
        status=ExecutionStatus.RUNNING,
        trigger_type="manual",
        lease=Lease("me", 2),
        created_at=now,
        started_at=now,
        deadline_at=None,
        cancel_requested=False,
        recoveries=1,
        steps=steps,
    )


def test_step_indexes_go_on_after_the_largest_stored_one() -> None:
    steps = {
        "a": StepRecord("a", 1, StepStatus.SUCCEEDED, index=1),
        "b": StepRecord("b", 3, StepStatus.RUNNING, index=4),  # attempts 1, 2 were 2 and 3
        "c": StepRecord("c", 0, StepStatus.SKIPPED),
    }
    claimed = _claimed(steps)
    definition = parse_definition(claimed.definition)
    state = ExecutionState(claimed, definition, Graph(definition))
    restore(state)
    assert state.step_index == {"a": 1, "b": 4}
    assert state.begin("b") == 5
    assert state.step_index["b"] == 5
