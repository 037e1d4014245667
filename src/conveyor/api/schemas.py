"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

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


class TriggerChange(BaseModel):
    """What saving a version did to one declared trigger; ``secret`` only when one was
    generated now (shown this once), ``url`` for webhooks."""

    kind: Literal["schedule", "webhook"]
    key: str
    id: str
    change: Literal["created", "updated", "deleted"]
    url: str | None = None
    secret: str | None = None


class WorkflowDetail(Workflow):
    definition: dict[str, Any]
    created: bool | None = None
    triggers: list[TriggerChange] = Field(
        default_factory=list, description="on create/update: what the save did to triggers"
    )


class Webhook(BaseModel):
    """A webhook (never its secret)."""

    id: str
    key: str
    workflow_id: str
    url: str | None = Field(
        description="The public URL (its token is a credential); null for viewers"
    )
    auth_mode: str
    enabled: bool
    source: Literal["definition", "api"]
    spec: dict[str, Any]
    last_delivery_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Webhook):
    secret: str | None = Field(description="the signing secret or token, shown only now")


class SecretBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    secret: str | None = Field(
        default=None,
        min_length=8,
        max_length=500,
        description="a secret to use (a provider's, such as Stripe's whsec_...); "
        "omitted: a new one is generated",
    )


class WebhookSecret(BaseModel):
    id: str
    secret: str = Field(description="shown only now")


class WebhookDelivery(BaseModel):
    received_at: datetime
    method: str
    status_code: int
    outcome: Literal["started", "duplicate", "refused", "rejected", "failed"]
    detail: str | None = None
    delivery_id: str | None = None
    execution_id: str | None = None
    client: str | None = None


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


# A list of ExecuteBody: many executions in one transaction (one version for all).
ExecuteBatch = Annotated[list[ExecuteBody], Field(min_length=1, max_length=10_000)]


def _shape(value: Any) -> str:
    return "@list" if isinstance(value, list) else "@object"


# The execute body: one object, or a list of them, told apart by its JSON shape so that a
# problem names the fields of the shape sent (the tags, starting with "@", are dropped from
# the paths in problems.validation_error).
ExecuteRequest = Annotated[
    Annotated[ExecuteBody, Tag("@object")] | Annotated[ExecuteBatch, Tag("@list")],
    Discriminator(_shape),
]


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


class BatchItem(BaseModel):
    """One item of a batch: ``queued`` with its execution (``created`` false for a key
    already used), or ``refused`` with the problem that refused it alone."""

    status: Literal["queued", "refused"]
    execution_id: str | None = None
    created: bool | None = None
    links: ExecutionLinks | None = None
    problem: dict[str, Any] | None = None


class BatchAccepted(BaseModel):
    workflow_id: str
    version: int
    created: int
    refused: int
    items: list[BatchItem]


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
    trigger_id: str | None = Field(None, description="the schedule or webhook that started it")
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


class LastExecution(BaseModel):
    id: str
    status: str
    created_at: datetime


class WorkflowItem(Workflow):
    """A row of the workflows list: the workflow and how its executions go."""

    last_execution: LastExecution | None = None
    success_rate: float | None = Field(
        None, description="succeeded / finished, over every finished execution"
    )
    executions_24h: int = Field(description="executions created in the last 24 hours")


class VersionChanges(BaseModel):
    nodes: dict[str, list[Any]] = Field(
        description="added and removed: node ids; changed: {id, fields}"
    )
    edges: dict[str, list[dict[str, Any]]] = Field(
        description="added and removed: {from, to, branch} (needs and edges alike)"
    )
    fields: list[str] = Field(description="other top-level fields that changed")


class VersionDiff(BaseModel):
    workflow_id: str
    from_version: int
    to_version: int
    unified: str = Field(description="unified diff of the two versions rendered as YAML")
    changes: VersionChanges


class NodeTypeInfo(BaseModel):
    name: str
    title: str
    description: str
    category: str = Field(description="http, control, data, messaging, workflow, custom, ...")
    icon: str = Field(description="a keyword the dashboard maps to an icon")
    config_schema: dict[str, Any] = Field(
        description='JSON Schema of the config; "x-template": true marks values that may '
        "hold templates (checked, against patterns and enums too, once rendered)"
    )
    branches: list[str] | None = Field(
        description="the branch labels it always has (condition: false, true); null: none"
    )
    branches_from: str | None = Field(
        description="the config field whose keys are branch labels too (switch: config.cases)"
    )
    repeatable: bool = Field(description="false: unsafe to repeat, one attempt by default")
    waits: bool = Field(description="returns at once and waits (timer, signal, child)")


class ValidateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yaml: str | None = Field(None, description="the definition as YAML text")
    definition: dict[str, Any] | None = Field(None, description="or as JSON")

    @model_validator(mode="after")
    def _exactly_one(self) -> ValidateBody:
        if (self.yaml is None) == (self.definition is None):
            raise ValueError("give exactly one of 'yaml' or 'definition'")
        return self


class LocatedProblem(BaseModel):
    message: str
    node_id: str | None = Field(description="the node the problem concerns, if any")
    path: str = Field(description="relative to the node when node_id is set (as in 422s)")
    document_path: str = Field(description="from the top of the definition: nodes[2].config.url")
    line: int | None = Field(description="1-based, in the YAML text (null for JSON)")
    column: int | None = None


class ValidationReport(BaseModel):
    valid: bool
    problems: list[LocatedProblem]
    definition: dict[str, Any] | None = Field(
        description="the normalized definition (what a save stores) when valid"
    )
    document: dict[str, Any] | None = Field(
        None,
        description="the text as plain data, valid or not, when it is a mapping: what an "
        "editor draws while problems remain",
    )


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(
        min_length=1, max_length=4000, description="what the workflow should do, in words"
    )
    repairs: int = Field(
        2, ge=0, le=5, description="times the validator's problems go back to the model"
    )


class DraftReport(BaseModel):
    valid: bool = Field(description="the last draft validates: it would save as it is")
    definition: dict[str, Any] | None = Field(
        description="the last draft as plain data (null when the model's answer was not a "
        "YAML mapping); nothing is saved"
    )
    yaml: str = Field(description="the last draft as YAML text, what an editor shows")
    problems: list[LocatedProblem] = Field(description="what is still wrong with it")
    attempts: int = Field(description="how many times the model was asked")


def _in_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""A timestamp with its time zone (required), converted to UTC."""

StatusName = Literal[
    "queued", "running", "waiting", "succeeded", "failed", "cancelled", "timed_out"
]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]


class ExecutionQuery(BaseModel):
    """A selection of executions by filter: the fields of the list's query."""

    model_config = ConfigDict(extra="forbid")

    status: list[StatusName] | StatusName | None = Field(
        default=None, description="one status or several (any of them)"
    )
    workflow: ShortText | None = Field(default=None, description="a workflow name or id")
    user: ShortText | None = Field(default=None, description="a user id or email")
    trigger_type: ShortText | None = None
    trigger_id: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        default=None, description="the schedule or webhook that started them"
    )
    created_after: UtcDatetime | None = None
    created_before: UtcDatetime | None = None
    error: ShortText | None = Field(default=None, description="text in the error")
    q: ShortText | None = Field(default=None, description="text in the error or the input")


class BulkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["cancel", "retry", "replay"]
    ids: list[Annotated[str, Field(min_length=1, max_length=32)]] | None = Field(
        default=None, max_length=10_000, description="full execution ids"
    )
    filter: ExecutionQuery | None = Field(
        default=None, description="every execution matching it (instead of ids)"
    )
    dry_run: bool = Field(default=False, description="only count what the action would touch")
    from_node: str | None = Field(
        default=None, min_length=1, max_length=100, description="replay: the node to rerun from"
    )
    version: Literal["pinned", "current"] = "pinned"

    @model_validator(mode="after")
    def _one_selection(self) -> BulkBody:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either 'ids' or 'filter'")
        return self


class BulkError(BaseModel):
    execution_id: str
    detail: str


class BulkResult(BaseModel):
    action: str
    dry_run: bool
    selected: int = Field(description="executions in the selection")
    eligible: int = Field(description="of those, the ones the action applies to")
    limit: int = Field(description="the most executions one bulk action acts on")
    touched: int = Field(description="acted on (0 in a dry run)")
    skipped: int = Field(description="not, or no longer, eligible when reached")
    errors_total: int
    errors: list[BulkError] = Field(description="the first errors, one per execution")


class StatusCounts(BaseModel):
    total: int
    live: int = Field(description="queued, running or waiting")
    by_status: dict[str, int]


class Bucket(BaseModel):
    start: datetime
    executions: int = Field(description="executions created in the bucket")
    succeeded: int
    failed: int = Field(description="failed or timed out")
    cancelled: int
    p50_ms: float | None = None
    p95_ms: float | None = None


class Timeseries(BaseModel):
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    bucket: Literal["minute", "hour", "day"]
    buckets: list[Bucket]

    model_config = ConfigDict(populate_by_name=True)


class RangeStats(BaseModel):
    executions: int
    succeeded: int | None = None
    failed: int | None = None
    cancelled: int | None = None
    success_rate: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    tokens: int
    api_calls: int
    last_executed_at: datetime | None = None


class WorkflowRangeStats(RangeStats):
    workflow_id: str
    workflow_name: str


class UserStats(RangeStats):
    user_id: str
    email: str | None = None
    name: str | None = None


class CredentialUse(BaseModel):
    workflow_id: str
    workflow: str
    status: str


class Credential(BaseModel):
    """A credential as anyone may see it: never a secret field's value."""

    id: str
    name: str
    type: str
    description: str
    fields: dict[str, Any] = Field(description="the non-secret fields (host, username, ...)")
    secret_fields: list[str] = Field(description="set, write-only: never returned")
    used_by: list[CredentialUse] = Field(
        description="workflows whose latest version names it (credential: or secrets.NAME)"
    )
    created_at: datetime
    updated_at: datetime


class CredentialBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
    type: str = Field(
        description="bearer, basic, header, query, smtp, database, llm, webhook_secret"
    )
    data: dict[str, Any] = Field(description="every field of the type, secret ones included")
    description: str = Field(default="", max_length=1000)


class CredentialReplace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(default=None, description="omitted: the type it has")
    data: dict[str, Any] = Field(description="every field again: none is read back")
    description: str | None = Field(default=None, max_length=1000)


class CredentialType(BaseModel):
    name: str
    title: str
    fields: list[dict[str, Any]]
