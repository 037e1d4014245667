"""CLI exit codes, chosen in this one place."""

from __future__ import annotations

from conveyor.errors import (
    ConveyorError,
    DefinitionError,
    InputError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
)

OK = 0
FAILED = 1
BAD_INPUT = 2
INTERRUPTED = 130  # Ctrl-C
TERMINATED = 143  # SIGTERM


def exit_code(exc: ConveyorError) -> int:
    bad_input = (
        DefinitionError | InputError | InvalidInput | PayloadTooLarge | StoreUnavailable | NotFound
    )
    if isinstance(exc, bad_input):
        return BAD_INPUT
    return FAILED


def describe(exc: ConveyorError) -> list[str]:
    """One precise line per problem."""
    if isinstance(exc, DefinitionError):
        return [f"invalid definition: {p}" for p in exc.problems]
    if isinstance(exc, InvalidInput):
        return [f"invalid input: {p}" for p in exc.problems]
    return [f"error: {exc}"]
