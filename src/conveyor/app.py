"""Conveyor: the commands every interface shares (apply, execute, ...), on one Store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.engine.definition import parse_definition
from conveyor.engine.interfaces import Clock
from conveyor.engine.templates import TemplateProblem, render
from conveyor.engine.validation import validate
from conveyor.errors import InputError
from conveyor.nodes.registry import Registry
from conveyor.store import Database, Store
from conveyor.store.executions import NewExecution
from conveyor.store.workflows import DEFAULT_WORKSPACE, VersionRef


@dataclass(frozen=True)
class Enqueued:
    execution_id: str
    created: bool
    workflow_id: str
    version: int


class Conveyor:
    def __init__(self, store: Store, registry: Registry, workspace_id: str) -> None:
        self.store = store
        self.registry = registry
        self.workspace_id = workspace_id

    @classmethod
    async def open(
        cls,
        database_url: str,
        registry: Registry,
        *,
        clock: Clock | None = None,
        workspace: str = DEFAULT_WORKSPACE,
        migrate: bool = True,
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
        return cls(store, registry, workspace_id)

    def close(self) -> None:
        self.store.close()

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validate a definition and return its normalized form (what gets stored)."""
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
        created_by: str | None = None,
    ) -> Enqueued:
        """Enqueue an execution of a stored workflow (one transaction; durable on return)."""
        ref = await self.store.find_version(self.workspace_id, workflow, version)
        if input is None:
            input = {}
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
            raise InputError("an idempotency key has 1 to 200 characters")
        new = new_execution(ref, input, self.workspace_id)
        new.trigger_type = trigger_type
        new.priority = priority if priority is not None else new.priority
        new.idempotency_key = idempotency_key
        new.created_by = created_by
        execution_id, created = await self.store.enqueue(new)
        return Enqueued(execution_id, created, ref.workflow_id, ref.version)


def new_execution(ref: VersionRef, input: Any, workspace_id: str) -> NewExecution:
    """An execution of ``ref`` with its flow-control settings resolved for ``input``."""
    definition = parse_definition(ref.definition)
    settings = definition.settings
    new = NewExecution(
        workspace_id=workspace_id,
        workflow_id=ref.workflow_id,
        version_id=ref.version_id,
        input=input,
        steps_total=len(definition.nodes),
        priority=settings.priority,
    )
    if settings.concurrency is not None:
        new.workflow_limit = settings.concurrency.limit
        if settings.concurrency.key is not None:
            context = {"trigger": input, "input": input}
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
