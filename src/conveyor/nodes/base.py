"""The contract node authors see: node types, their context, and what a step returns."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict


class EmptyConfig(BaseModel):
    model_config = ConfigDict(extra="allow")


@dataclass
class Usage:
    """What a step consumed, summed per execution and per user."""

    tokens: int = 0
    api_calls: int = 0

    def add(self, other: Usage) -> None:
        self.tokens += other.tokens
        self.api_calls += other.api_calls

    def as_dict(self) -> dict[str, int]:
        return {"tokens": self.tokens, "api_calls": self.api_calls}


STOP_STATUSES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Stop:
    """End the execution now with ``status`` (one of :data:`STOP_STATUSES`) and ``message``."""

    status: str
    message: str = ""

    def __post_init__(self) -> None:
        if self.status not in STOP_STATUSES:
            raise ValueError(f"a stop status is one of {', '.join(STOP_STATUSES)}")


@dataclass
class NodeResult:
    """What a node returns when it needs more than a plain output.

    ``branch`` names the outgoing branch taken (condition, switch). ``wait_until`` asks the
    runner to finish the step at that time with ``output``. ``wait_signal`` asks it to
    finish the step when a signal of that name arrives (its data becomes the output), or to
    fail it at ``wait_until`` if one is given. The runner decides whether to hold the
    worker slot meanwhile. ``stop`` ends the execution once the step's output is recorded:
    pending nodes are skipped, running and waiting steps cancelled (``stop``).
    """

    output: Any = None
    branch: str | None = None
    wait_until: datetime | None = None
    wait_signal: str | None = None
    stop: Stop | None = None


class StepLog:
    """A logger whose lines are stored with the step. Past ``max_lines`` (0: no limit) lines
    are dropped and counted in one marker line, so a chatty node cannot bloat its step."""

    def __init__(self, max_lines: int = 0) -> None:
        self.lines: list[dict[str, str]] = []
        self.max_lines = max_lines
        self.dropped = 0

    def _add(self, level: str, message: str) -> None:
        ts = datetime.now(UTC).isoformat()
        if not self.max_lines or len(self.lines) < self.max_lines:
            self.lines.append({"ts": ts, "level": level, "message": str(message)})
            return
        self.dropped += 1
        marker = {
            "ts": ts,
            "level": "warning",
            "message": f"{self.dropped} more log lines dropped: the limit is {self.max_lines} "
            "per step (CONVEYOR_MAX_LOG_LINES)",
        }
        if self.dropped == 1:
            self.lines.append(marker)
        else:
            self.lines[-1] = marker

    def debug(self, message: str) -> None:
        self._add("debug", message)

    def info(self, message: str) -> None:
        self._add("info", message)

    def warning(self, message: str) -> None:
        self._add("warning", message)

    def error(self, message: str) -> None:
        self._add("error", message)


@dataclass(frozen=True)
class Credential:
    """A stored credential, decrypted for one step. ``type`` is one of
    :data:`conveyor.credentials.TYPES` (bearer, basic, header, query, smtp, database, llm,
    webhook_secret); ``data`` holds its fields, e.g. ``{"token": ...}`` for bearer,
    ``{"username", "password"}`` for basic, ``{"name", "value"}`` for header and query,
    ``{"host", "port", "username", "password", "security", "sender"}`` for smtp,
    ``{"url"}`` for database, ``{"provider", "api_key", "base_url"}`` for llm, ``{"secret"}``
    for webhook_secret. Every secret field's value is redacted (``***``) from whatever the
    step stores: its input, output, error, logs, events."""

    name: str
    type: str
    data: dict[str, Any]


class CredentialSource(Protocol):
    """The credentials of the workspace an execution runs in."""

    async def get(self, name: str) -> Credential:
        """The credential ``name``; raises a non-retryable NodeError when there is none."""
        ...


Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


@dataclass(frozen=True)
class NetworkPolicy:
    """Where a node may connect (enforced by :mod:`conveyor.nodes.outbound`).
    ``allow_private``: loopback and private addresses too (``CONVEYOR_ALLOW_PRIVATE_NETWORK``,
    tests and trusted installs). ``allowlist`` (``CONVEYOR_OUTBOUND_ALLOWLIST``): when not
    empty, only these hosts (``example.com``, ``*.example.com``) or addresses in these
    networks (CIDR; a listed private network is allowed without ``allow_private``).
    ``workspace_allowlist``: the workspace's own list (its admins set it): when not empty, a
    host must match it too; it narrows what the operator allows, never widens it.
    ``resolver``: turns a host name and port into addresses (default: getaddrinfo); tests
    inject one to play DNS tricks without touching the system resolver."""

    allow_private: bool = False
    allowlist: tuple[str, ...] = ()
    workspace_allowlist: tuple[str, ...] = ()
    resolver: Resolver | None = field(default=None, compare=False)


LiveSink = Callable[[str, dict[str, Any]], None]


class Services(Protocol):
    """What the runtime offers node code beyond its config."""

    async def notify(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        """Record the step's in-app notification (once per step: a retry finds it)."""
        ...

    async def create_task(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        """Record the step's task for a person (once per step: a retry finds it)."""
        ...

    async def start_child(
        self,
        parent_execution_id: str,
        parent_node_id: str,
        workflow: str,
        input: Any,
        idempotency_key: str,
    ) -> str:
        """Enqueue a child execution (once per key); its outcome arrives as the signal
        ``child:<id>``."""
        ...

    async def wait_child(self, execution_id: str) -> dict[str, Any]:
        """Wait until the execution has finished; its ``status``, ``result`` and ``error``."""
        ...

    async def save_checkpoint(self, execution_id: str, node_id: str, key: str, value: Any) -> None:
        """Keep what a step finished inside itself (first value wins)."""
        ...

    async def checkpoints(self, execution_id: str, node_id: str) -> dict[str, Any]:
        """What earlier attempts of the step kept with ``save_checkpoint``."""
        ...

    async def outbound_allowlist(self, workspace_id: str) -> tuple[str, ...]:
        """The workspace's own outbound allowlist (empty: none)."""
        ...

    async def credentials(self, workspace_id: str) -> list[Credential]:
        """Every credential of a workspace, decrypted (raises NodeError when they cannot
        be: a missing key)."""
        ...

    async def child_outcome(self, execution_id: str) -> dict[str, Any] | None:
        """A child execution's ``{"status", "result", "error"}`` once it has finished, else
        None (for a node that waits for children while it runs: ``llm.agent``)."""
        ...

    async def children(self, parent_execution_id: str, parent_node_id: str) -> list[ChildRef]:
        """The child executions a step started (by any attempt), oldest first."""
        ...


@dataclass(frozen=True)
class ChildRef:
    """A child execution as the step that started it knows it: ``key`` is the idempotency
    key it was started with."""

    execution_id: str
    key: str
    workflow: str
    input: Any


Render = Callable[[Any, dict[str, Any]], Any]
"""Render the templates in a value with the execution's variables plus the extra ones given
(``foreach``: ``item`` and ``index``); a bad template raises a non-retryable NodeError."""


@dataclass
class NodeContext:
    """Everything a node may know about the step it runs."""

    execution_id: str
    workflow_id: str
    node_id: str
    attempt: int
    services: Services
    clock: Callable[[], datetime]
    log: StepLog = field(default_factory=StepLog)
    usage: Usage = field(default_factory=Usage)
    credentials: CredentialSource | None = None
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    # Live-only messages (progress, streamed LLM deltas): shown on the execution's stream
    # and the dashboard, never stored. None: nobody listens (tests, a bare runner).
    live: LiveSink | None = None
    # For node types that run other node types (``foreach``): the registry's lookup, and
    # the renderer of the config fields the type keeps raw (``NodeType.raw_config``).
    node_types: Callable[[str], NodeType | None] | None = None
    render: Render | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across every attempt of this step: ``execution id : node id``."""
        return f"{self.execution_id}:{self.node_id}"

    def report_usage(self, *, tokens: int = 0, api_calls: int = 0) -> None:
        self.usage.add(Usage(tokens=tokens, api_calls=api_calls))

    def now(self) -> datetime:
        return self.clock()

    async def credential(self, name: str, *types: str) -> Credential:
        """The workspace's credential ``name``, checked to be one of ``types`` (if given).
        Missing, or of another type: a non-retryable step error that says so."""
        from conveyor.errors import NodeError

        if self.credentials is None:
            raise NodeError("credentials are not available to this step", non_retryable=True)
        found = await self.credentials.get(name)
        if types and found.type not in types:
            raise NodeError(
                f"credential '{name}' is of type {found.type}; this step needs "
                + " or ".join(types),
                non_retryable=True,
            )
        return found

    async def checkpoints(self) -> dict[str, Any]:
        """What earlier attempts of this step kept (``save_checkpoint``), by key: the work a
        step does in parts (items, tool calls) is not done twice when it is retried or
        resumed after a crash. Values are scrubbed of secrets like everything stored."""
        return await self.services.checkpoints(self.execution_id, self.node_id)

    async def save_checkpoint(self, key: str, value: Any) -> None:
        await self.services.save_checkpoint(self.execution_id, self.node_id, key, value)

    def report_progress(self, done: float, total: float | None = None, message: str = "") -> None:
        """Tell watchers how far the step is (``done`` of ``total``). Live only: shown on the
        execution's stream and on the node in the dashboard, never stored; cheap to call
        often (the runtime coalesces)."""
        data: dict[str, Any] = {"done": done}
        if total is not None:
            data["total"] = total
        if message:
            data["message"] = message
        self.emit("step.progress", data)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Send a live-only message about this step (``step.progress``, ``step.delta``)."""
        if self.live is not None:
            self.live(kind, {"node_id": self.node_id, "attempt": self.attempt, **data})


class NodeType:
    """A kind of node. Subclass it, or use :func:`node` on a function.

    ``config_model`` validates the node's config (after templates are rendered);
    ``branches`` tells which branch labels the node can produce (``None``: no labels);
    ``repeatable`` false says a second attempt may do harm (a payment without an idempotency
    key): steps of the type then get one attempt unless a retry policy is given explicitly.
    ``wait_bound`` names the config that bounds a node which returns at once and then waits
    (``wait``, ``wait_for_event``, ``workflow.call``): a step ``timeout`` bounds node code,
    and such a node runs none while it waits, so a ``timeout`` on it is rejected and points
    there instead.

    For the dashboard's palette: ``title`` (default: from the name), ``category`` (http,
    control, data, messaging, workflow, ...; default ``custom``), ``icon`` (a keyword the UI
    maps to an icon), and ``branches_from``, the config field whose keys are branch labels
    too (switch: ``cases``). Every string in a config may hold a template; a top-level field
    that must not says so with ``json_schema_extra={"x-template": False}`` (and may give an
    ``"x-template-hint"``): the runner passes it to the node as written, and validation
    rejects a template in it (db.query's ``sql``).
    """

    name: str = ""
    title: str = ""
    description: str = ""
    category: str = "custom"
    icon: str = "node"
    config_model: type[BaseModel] = EmptyConfig
    repeatable: bool = True
    wait_bound: str | None = None
    branches_from: str | None = None
    # Config fields the runner passes on unrendered; the node renders them itself with
    # ``ctx.render`` and extra variables (``foreach``'s ``node``, rendered per item).
    raw_config: frozenset[str] = frozenset()
    # For the generated node reference (docs/nodes.md, the palette): one node entry as it
    # appears in a definition's ``nodes:`` list, e.g. ``{"id": "get", "type": ..., "config":
    # {...}}``.
    example: dict[str, Any] | None = None

    def branches(self, config: dict[str, Any]) -> frozenset[str] | None:
        return None

    async def run(self, ctx: NodeContext, config: Any) -> Any:
        raise NotImplementedError


NodeFunction = Callable[[NodeContext, Any], Any]


class FunctionNode(NodeType):
    """A node type made from a plain function; sync functions run in a worker thread."""

    def __init__(
        self,
        name: str,
        fn: NodeFunction,
        config_model: type[BaseModel],
        branches: frozenset[str] | None,
        description: str,
        repeatable: bool = True,
        *,
        title: str = "",
        category: str = "custom",
        icon: str = "node",
    ) -> None:
        self.name = name
        self.title = title
        self.category = category
        self.icon = icon
        self.repeatable = repeatable
        self.fn = fn
        self.config_model = config_model
        self._branches = branches
        self.description = description or (inspect.getdoc(fn) or "").split("\n")[0]

    def branches(self, config: dict[str, Any]) -> frozenset[str] | None:
        return self._branches

    async def run(self, ctx: NodeContext, config: Any) -> Any:
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(ctx, config)
        result = await asyncio.to_thread(self.fn, ctx, config)
        if inspect.isawaitable(result):
            return await result
        return result


def node(
    name: str,
    *,
    config: type[BaseModel] = EmptyConfig,
    branches: list[str] | None = None,
    description: str = "",
    repeatable: bool = True,
    title: str = "",
    category: str = "custom",
    icon: str = "node",
) -> Callable[[NodeFunction], FunctionNode]:
    """Declare a node type from a function ``fn(ctx, config)``; register it with a Registry.

    The decorated name becomes a :class:`NodeType`, so ``Registry.load_module`` finds it.
    """

    def wrap(fn: NodeFunction) -> FunctionNode:
        labels = frozenset(branches) if branches is not None else None
        return FunctionNode(
            name,
            fn,
            config,
            labels,
            description,
            repeatable,
            title=title,
            category=category,
            icon=icon,
        )

    return wrap


AsyncNodeFunction = Callable[[NodeContext, Any], Awaitable[Any]]
