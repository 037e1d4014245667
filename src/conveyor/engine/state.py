"""Statuses of executions and steps, and which execution transitions are legal."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.TIMED_OUT,
    }
)

_LEGAL: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.QUEUED: frozenset({ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED}),
    ExecutionStatus.RUNNING: frozenset(
        {ExecutionStatus.WAITING, ExecutionStatus.QUEUED} | TERMINAL
    ),
    ExecutionStatus.WAITING: frozenset(
        {
            ExecutionStatus.RUNNING,
            ExecutionStatus.CANCELLED,
            ExecutionStatus.TIMED_OUT,
            ExecutionStatus.FAILED,
        }
    ),
}


def can_transition(current: ExecutionStatus, target: ExecutionStatus) -> bool:
    """Terminal is final (G7); RUNNING may go back to QUEUED when a worker releases it."""
    return (
        target in _LEGAL.get(current, frozenset()) or current == target == ExecutionStatus.RUNNING
    )


class StepStatus(StrEnum):
    """Status of one attempt. A failed attempt with ``wait_until`` set will be retried then."""

    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
