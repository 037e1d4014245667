"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    has_more: bool
    next_cursor: str | None = None


class DefinitionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: dict[str, Any] = Field(description="a workflow definition (see conveyor schema)")


class Workflow(BaseModel):
    id: str
    name: str
    status: str
    latest_version: int
    created_at: datetime
    updated_at: datetime
    last_executed_at: datetime | None = None


class WorkflowDetail(Workflow):
    definition: dict[str, Any]
    created: bool | None = None


class Version(BaseModel):
    id: str
    version: int
    digest: str
    created_at: datetime


class ExecuteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Any = Field(default_factory=dict)
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    priority: int | None = Field(default=None, ge=-1000, le=1000)


class ExecutionLinks(BaseModel):
    self: str
    stream: str
    cancel: str


class Accepted(BaseModel):
    execution_id: str
    created: bool
    workflow_id: str
    version: int
    status: str
    links: ExecutionLinks


class Progress(BaseModel):
    total: int
    completed: int
    succeeded: int
    failed: int
    skipped: int
    running: int
    percentage: float


class Step(BaseModel):
    node_id: str
    node_type: str
    attempt: int
    step_index: int | None = Field(
        None, description="the order in which this attempt started in the execution (1-based)"
    )
    status: str
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    logs: list[dict[str, Any]] | None = None
    branch: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    wait_until: datetime | None = Field(
        None, description="a waiting attempt: until when; a failed one: when it is retried"
    )
    wait_signal: str | None = Field(None, description="the signal a waiting attempt waits for")
    usage: dict[str, int]


class Execution(BaseModel):
    id: str
    workflow_id: str
    workflow_name: str
    status: str
    trigger_type: str
    input: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    priority: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    progress: Progress
    usage: dict[str, int]
    created_by: str | None = None
    retry_of: str | None = None
    parent_execution_id: str | None = None
    paused: bool = Field(False, description="paused: starts no new step until resumed")
    blocked_reason: str | None = None


class ExecutionDetail(Execution):
    version: int
    steps: list[Step]


class DurationStats(BaseModel):
    sample: int
    avg_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None


class ListStats(DurationStats):
    total: int
    by_status: dict[str, int]
    success_rate: float | None = None


class ExecutionPage(Page[Execution]):
    stats: ListStats | None = None


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_node: str = Field(min_length=1, max_length=100)
    input: Any = None
    version: Literal["pinned", "current"] = "pinned"


class SignalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    data: Any = None


class ControlResult(BaseModel):
    execution_id: str
    status: str
