"""What the runner needs from storage and time, as protocols over plain data."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from conveyor.engine.state import ExecutionStatus, StepStatus


class Clock(Protocol):
    def now(self) -> datetime: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


@dataclass(frozen=True)
class EventRecord:
    """A committed event; ``(execution_id, seq)`` identifies it."""

    execution_id: str
    workspace_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class ExecutionUser:
    """Who started an execution: the authenticated caller, set by the server and never
    taken from the input."""

    id: str
    email: str
    name: str = ""


def user_variables(user: ExecutionUser | None) -> dict[str, str | None]:
    """``execution.user`` as templates see it. Without a user (the CLI, schedules, child
    executions of such) every field is None, so ``{{ execution.user.id }}`` renders rather
    than failing the enqueue."""
    if user is None:
        return {"id": None, "email": None, "name": None}
    return {"id": user.id, "email": user.email, "name": user.name}


@dataclass(frozen=True)
class Lease:
    owner: str
    number: int


@dataclass
class StepRecord:
    """The latest attempt of one node, as stored."""

    node_id: str
    attempt: int
    status: StepStatus
    output: Any = None
    error: dict[str, Any] | None = None
    branch: str | None = None
    continued: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    wait_until: datetime | None = None
    wait_signal: str | None = None
    index: int | None = None  # the step index (see StepStart)


@dataclass
class Signal:
    id: int
    name: str
    data: Any


@dataclass
class ClaimedExecution:
    id: str
    workspace_id: str
    workflow_id: str
    workflow_name: str
    version: int
    definition: dict[str, Any]
    input: Any
    status: ExecutionStatus
    trigger_type: str
    lease: Lease
    created_at: datetime
    started_at: datetime | None
    deadline_at: datetime | None
    cancel_requested: bool
    recoveries: int
    steps: dict[str, StepRecord] = field(default_factory=dict)
    crashes: int = 0  # worker deaths attributed to it (while it ran alone)
    isolated: bool = False  # a suspect running alone until a step of it finishes
    first_claim: bool = False
    recovered: bool = False  # taken from a worker whose lease expired
    signals: list[Signal] = field(default_factory=list)
    paused: bool = False
    lease_seconds: float = 30.0
    user: ExecutionUser | None = None


@dataclass
class StepStart:
    node_id: str
    node_type: str
    attempt: int
    input: Any
    started_at: datetime
    # The step index: the order in which this attempt started within its execution (1-based).
    index: int | None = None


@dataclass
class StepFinish:
    node_id: str
    attempt: int
    status: StepStatus
    finished_at: datetime
    output: Any = None
    error: dict[str, Any] | None = None
    logs: list[dict[str, str]] | None = None
    branch: str | None = None
    continued: bool = False
    wait_until: datetime | None = None
    wait_signal: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


@dataclass
class Changes:
    """Everything one transition writes, in one transaction fenced by the lease."""

    started: list[StepStart] = field(default_factory=list)
    finished: list[StepFinish] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    status: ExecutionStatus | None = None
    started_at: datetime | None = None
    deadline_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    available_at: datetime | None = None
    wait_reason: str | None = None
    release: bool = False
    innocent: bool = False  # a suspect's step finished: it is a suspect no more
    consumed_signals: list[tuple[int, str]] = field(default_factory=list)
    # Parking as waiting: signal names that must make the execution due at once if one is
    # already there (a signal can land between the runner's last look and this write).
    wake_signals: list[str] = field(default_factory=list)

    def count(self, name: str, delta: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + delta

    def __bool__(self) -> bool:
        return bool(
            self.started
            or self.finished
            or self.skipped
            or self.events
            or self.status
            or self.release
        )


class ExecutionStore(Protocol):
    async def apply(self, execution: ClaimedExecution, changes: Changes) -> None:
        """Write ``changes`` in one transaction; raise LeaseLost if the lease is not held."""
        ...

    async def pending_signals(self, execution_id: str) -> list[Signal]: ...


def seconds_between(start: datetime, end: datetime) -> float:
    return (end - start) / timedelta(seconds=1)
