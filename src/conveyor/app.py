"""Conveyor: the commands every interface shares (apply, execute, ...), on one Store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.engine.definition import WorkflowDefinition, parse_definition
from conveyor.engine.graph import Graph
from conveyor.engine.inputs import check_input
from conveyor.engine.interfaces import Clock, ExecutionUser, user_variables
from conveyor.engine.limits import DEFAULT_LIMITS, Limits
from conveyor.engine.state import TERMINAL
from conveyor.engine.templates import TemplateProblem, render
from conveyor.engine.validation import validate
from conveyor.errors import Conflict, InputError
from conveyor.nodes.registry import Registry
from conveyor.store import Database, Store, accounts
from conveyor.store.executions import NewExecution
from conveyor.store.workflows import DEFAULT_WORKSPACE, VersionRef


@dataclass(frozen=True)
class Enqueued:
    execution_id: str
    created: bool
    workflow_id: str
    version: int


class Conveyor:
    """``limits`` bound what the commands accept (inputs, definitions, signal data) and,
    through the workers built on it, what steps may keep; one place for every interface."""

    def __init__(
        self, store: Store, registry: Registry, workspace_id: str, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        self.store = store
        self.registry = registry
        self.workspace_id = workspace_id
        self.limits = limits

    @classmethod
    async def open(
        cls,
        database_url: str,
        registry: Registry,
        *,
        clock: Clock | None = None,
        workspace: str = DEFAULT_WORKSPACE,
        migrate: bool = True,
        limits: Limits = DEFAULT_LIMITS,
    ) -> Conveyor:
        """Open (and migrate) the database and return the commands bound to a workspace."""
        db = Database(database_url)
        if migrate:
            db.migrate()
        store = Store(db, clock=clock)
        try:
            workspace_id = await store.workspace(workspace)
        except BaseException:
            store.close()
            raise
        return cls(store, registry, workspace_id, limits)

    def close(self) -> None:
        self.store.close()

    def scoped(self, workspace_id: str) -> Conveyor:
        """The same commands acting in another workspace (shares the store and registry)."""
        return Conveyor(self.store, self.registry, workspace_id, self.limits)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validate a definition and return its normalized form (what gets stored)."""
        self.limits.check_definition(data)
        definition = validate(data, self.registry)
        return definition.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def apply(self, data: dict[str, Any]) -> VersionRef:
        """Store a definition as a new version of its workflow (unchanged: no new version)."""
        return await self.store.apply_definition(self.workspace_id, self.validate(data))

    async def execute(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
        trigger_type: str = "manual",
        user: ExecutionUser | None = None,
    ) -> Enqueued:
        """Enqueue an execution of a stored workflow (one transaction; durable on return).

        ``user``: the authenticated caller (``execution.user`` in templates, the per-user
        running limit); interfaces set it from credentials, never from the input."""
        if input is None:
            input = {}
        self.limits.check_input(input)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
            raise InputError("an idempotency key has 1 to 200 characters")

        def build(ref: VersionRef) -> NewExecution:
            if ref.status == "archived":
                raise Conflict(f"workflow '{ref.workflow_name}' is archived; restore it first")
            check_input(_parsed(ref).input, input)
            new = new_execution(ref, input, self.workspace_id, user)
            new.trigger_type = trigger_type
            new.priority = priority if priority is not None else new.priority
            new.idempotency_key = idempotency_key
            return new

        ref, execution_id, created = await self.store.enqueue_version(
            self.workspace_id, workflow, version, build
        )
        return Enqueued(execution_id, created, ref.workflow_id, ref.version)

    async def cancel(self, execution_id: str) -> str:
        """Cancel an execution; returns ``cancelled``, or ``running`` when its worker has been
        asked to stop it (within a second), or the final status it already had."""
        return await self.store.cancel(self.workspace_id, execution_id)

    async def pause(self, execution_id: str) -> str:
        """A paused execution starts no new step; running steps finish and it waits."""
        return await self.store.set_paused(self.workspace_id, execution_id, True)

    async def resume(self, execution_id: str) -> str:
        return await self.store.set_paused(self.workspace_id, execution_id, False)

    async def signal(self, execution_id: str, name: str, data: Any = None) -> int:
        """Deliver a signal to an execution (a ``wait_for_event`` node waiting for ``name``
        takes it, now or when it gets there)."""
        if not name or len(name) > 200 or name.startswith("child:"):
            raise InputError(
                "a signal name has 1 to 200 characters and does not start with 'child:'"
            )
        self.limits.check_input(data, "the signal data")
        return await self.store.signal(self.workspace_id, execution_id, name, data)

    async def retry(self, execution_id: str, *, user: ExecutionUser | None = None) -> Enqueued:
        """A new execution of the same version and input that reuses every step that
        succeeded, so only the failed step and what follows it run again. It is started by
        ``user`` (who retries), not by whoever started the first one."""
        old = await self.store.get_execution(self.workspace_id, execution_id)
        if old["status"] not in ("failed", "cancelled", "timed_out"):
            raise Conflict(
                f"execution {old['id']} is {old['status']}; only failed, cancelled "
                "or timed-out executions can be retried"
            )
        reuse = {s["node_id"] for s in old["steps"] if s["status"] == "succeeded"}
        return await self._rerun(old, old["version"], old["input"], reuse, "retry", user)

    async def replay(
        self,
        execution_id: str,
        from_node: str,
        *,
        input: Any = None,
        current: bool = False,
        user: ExecutionUser | None = None,
    ) -> Enqueued:
        """A new execution that reuses the outputs of every succeeded step except
        ``from_node`` and what depends on it, which run again (with ``input`` if given).

        ``current`` replays on the workflow's latest version instead of the pinned one."""
        old = await self.store.get_execution(self.workspace_id, execution_id)
        if old["status"] not in TERMINAL:
            raise Conflict(
                f"execution {old['id']} is {old['status']}; wait for it to finish "
                "or cancel it before replaying"
            )
        ref = await self.store.find_version(
            self.workspace_id, old["workflow_id"], None if current else old["version"]
        )
        definition = parse_definition(ref.definition)
        graph = Graph(definition)
        if from_node not in graph.node_ids:
            raise InputError(
                f"node '{from_node}' does not exist in version {ref.version} of "
                f"workflow '{ref.workflow_name}'"
            )
        rerun = {from_node} | graph.descendants(from_node)
        reuse = {
            s["node_id"]
            for s in old["steps"]
            if s["status"] == "succeeded"
            and s["node_id"] in graph.node_ids
            and s["node_id"] not in rerun
        }
        if input is not None:
            self.limits.check_input(input)
        payload = old["input"] if input is None else input
        return await self._rerun(old, ref.version, payload, reuse, "replay", user)

    async def _rerun(
        self,
        old: dict[str, Any],
        version: int,
        input: Any,
        reuse: set[str],
        trigger: str,
        user: ExecutionUser | None,
    ) -> Enqueued:
        ref = await self.store.find_version(self.workspace_id, old["workflow_id"], version)
        new = new_execution(ref, input, self.workspace_id, user)
        new.trigger_type = trigger
        new.retry_of = old["id"]
        execution_id, created = await self.store.enqueue(new, seed_from=(old["id"], reuse))
        return Enqueued(execution_id, created, ref.workflow_id, ref.version)


class RuntimeServices:
    """What node code may ask of the platform (the ``Services`` of ``NodeContext``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def notify(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        return await self.store.notify(execution_id, node_id, payload)

    async def start_child(
        self,
        parent_execution_id: str,
        parent_node_id: str,
        workflow: str,
        input: Any,
        idempotency_key: str,
    ) -> str:
        parent = await self.store.execution_row(parent_execution_id)
        ref = await self.store.find_version(parent["workspace_id"], workflow)
        # A child runs for the user who started its parent (it is not held back by the
        # per-user limit, see store.executions).
        user = None
        if parent["created_by"] is not None:
            users = await self.store.read(accounts.execution_users, {parent["created_by"]})
            user = users[parent["created_by"]]
        new = new_execution(ref, input, parent["workspace_id"], user)
        new.trigger_type = "workflow"
        new.parent_execution_id = parent_execution_id
        new.parent_node_id = parent_node_id
        new.idempotency_key = f"child:{idempotency_key}"
        execution_id, _created = await self.store.enqueue(new)
        return execution_id


def new_execution(
    ref: VersionRef, input: Any, workspace_id: str, user: ExecutionUser | None = None
) -> NewExecution:
    """An execution of ``ref`` started by ``user``, with its flow-control settings resolved
    for ``input`` and ``user``."""
    definition = _parsed(ref)
    settings = definition.settings
    new = NewExecution(
        workspace_id=workspace_id,
        workflow_id=ref.workflow_id,
        version_id=ref.version_id,
        input=input,
        steps_total=len(definition.nodes),
        priority=settings.priority,
        created_by=user.id if user is not None else None,
    )
    if settings.concurrency is not None:
        new.workflow_limit = settings.concurrency.limit
        if settings.concurrency.key is not None:
            context = {
                "trigger": input,
                "input": input,
                "execution": {"user": user_variables(user)},
            }
            try:
                key = render(settings.concurrency.key, context, "settings.concurrency.key")
            except TemplateProblem as exc:
                raise InputError(f"cannot compute the concurrency key: {exc}") from None
            new.concurrency_key = str(key)[:200]
            new.key_limit = settings.concurrency.key_limit
    if settings.rate_limit is not None:
        new.rate_limit = settings.rate_limit.limit
        new.rate_period_seconds = settings.rate_limit.period.total_seconds()
    return new


_PARSED: dict[str, WorkflowDefinition] = {}


def _parsed(ref: VersionRef) -> WorkflowDefinition:
    """Versions never change: each is parsed once per process (a bounded cache)."""
    found = _PARSED.get(ref.version_id)
    if found is None:
        if len(_PARSED) >= 1000:
            _PARSED.clear()
        found = _PARSED[ref.version_id] = parse_definition(ref.definition)
    return found
