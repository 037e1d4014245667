"""Size limits on what Conveyor accepts and keeps: request bodies, inputs, definitions,
step outputs and log lines. Built from settings at the edges and passed down."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from conveyor.errors import NodeError, PayloadTooLarge, StepOutputTooLarge

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Byte sizes are of the compact JSON encoding, as stored; 0 means no limit."""

    request_bytes: int = 2 * MIB
    input_bytes: int = MIB
    definition_bytes: int = MIB
    step_output_bytes: int = MIB
    log_lines: int = 1000

    def check_input(self, value: Any, what: str = "the input") -> None:
        _check(what, value, self.input_bytes, "CONVEYOR_MAX_INPUT_BYTES")

    def check_definition(self, data: Any) -> None:
        _check("the definition", data, self.definition_bytes, "CONVEYOR_MAX_DEFINITION_BYTES")

    def check_step_output(self, value: Any) -> None:
        """Non-retryable step failures (the same node would produce the same output): over
        the size limit, or what the stored JSON cannot hold (an integer past 64 bits, a
        lone surrogate in text, nesting past 255 levels), which would otherwise fail the
        write of the step's outcome, and with it the execution."""
        try:
            size = len(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
        except orjson.JSONEncodeError as exc:
            raise NodeError(
                f"the step output cannot be stored: {exc}", non_retryable=True
            ) from None
        limit = self.step_output_bytes
        if limit and size > limit:
            raise StepOutputTooLarge(
                too_large("the step output", size, limit, "CONVEYOR_MAX_STEP_OUTPUT_BYTES")
            )


DEFAULT_LIMITS = Limits()


def json_size(value: Any) -> int:
    try:
        return len(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
    except TypeError:
        # Integers past 64 bits: measured anyway; whether they can be stored is decided later.
        return len(json.dumps(value, default=str, separators=(",", ":")).encode())


def too_large(what: str, size: int, limit: int, setting: str) -> str:
    return f"{what} is {size} bytes, over the limit of {limit} bytes ({setting})"


def _check(what: str, value: Any, limit: int, setting: str) -> None:
    if limit and (size := json_size(value)) > limit:
        raise PayloadTooLarge(too_large(what, size, limit, setting), setting=setting, limit=limit)
