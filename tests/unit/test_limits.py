"""Unit tests for the size limits: what is over, what the error names, the log marker."""

from __future__ import annotations

import pytest

from conveyor.engine.limits import Limits, json_size
from conveyor.errors import PayloadTooLarge, StepOutputTooLarge
from conveyor.nodes.base import StepLog


def test_an_input_over_the_limit_names_the_setting() -> None:
    limits = Limits(input_bytes=100)
    limits.check_input({"a": "x" * 80})
    with pytest.raises(PayloadTooLarge) as info:
        limits.check_input({"a": "x" * 200})
    assert info.value.setting == "CONVEYOR_MAX_INPUT_BYTES" and info.value.limit == 100
    assert str(info.value) == (
        f"the input is {json_size({'a': 'x' * 200})} bytes, over the limit of 100 bytes "
        "(CONVEYOR_MAX_INPUT_BYTES)"
    )


def test_definitions_and_step_outputs_have_their_own_limits() -> None:
    limits = Limits(definition_bytes=50, step_output_bytes=50)
    with pytest.raises(PayloadTooLarge, match="CONVEYOR_MAX_DEFINITION_BYTES"):
        limits.check_definition({"name": "n" * 60})
    with pytest.raises(StepOutputTooLarge, match="CONVEYOR_MAX_STEP_OUTPUT_BYTES") as info:
        limits.check_step_output(["y" * 60])
    assert info.value.non_retryable


def test_zero_means_no_limit() -> None:
    Limits(input_bytes=0, definition_bytes=0, step_output_bytes=0).check_input("z" * 10_000)


def test_log_lines_past_the_limit_are_dropped_with_one_marker() -> None:
    log = StepLog(max_lines=3)
    for i in range(10):
        log.info(f"line {i}")
    assert [line["message"] for line in log.lines[:3]] == ["line 0", "line 1", "line 2"]
    assert len(log.lines) == 4
    assert log.lines[3]["level"] == "warning"
    assert log.lines[3]["message"] == (
        "7 more log lines dropped: the limit is 3 per step (CONVEYOR_MAX_LOG_LINES)"
    )


def test_integers_past_64_bits_are_measured_too() -> None:
    assert json_size({"n": -(2**63) - 1}) == len('{"n":-9223372036854775809}')
