"""Conveyor: the commands every interface shares (apply, execute, ...), on one Store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection

from conveyor.engine.definition import WorkflowDefinition, parse_definition
from conveyor.engine.graph import Graph
from conveyor.engine.inputs import check_input
from conveyor.engine.interfaces import Clock, ExecutionUser, user_variables
from conveyor.engine.limits import DEFAULT_LIMITS, Limits
from conveyor.engine.state import TERMINAL, ExecutionStatus
from conveyor.engine.templates import TemplateProblem, render
from conveyor.engine.validation import validate
from conveyor.errors import Conflict, ConveyorError, InputError, NodeError
from conveyor.nodes.base import ChildRef, Credential
from conveyor.nodes.registry import Registry
from conveyor.secrets import Keyring, SecretKeyError
from conveyor.store import Database, Store, accounts, checkpoints, history, inbox, workflows
from conveyor.store import credentials as stored_credentials
from conveyor.store import triggers as store_triggers
from conveyor.store.executions import NewExecution
from conveyor.store.history import ExecutionFilter
from conveyor.store.store import Seeded
from conveyor.store.workflows import DEFAULT_WORKSPACE, VersionRef

RETRYABLE = frozenset(
    {ExecutionStatus.FAILED, ExecutionStatus.CANCELLED, ExecutionStatus.TIMED_OUT}
)


MAX_BATCH = 10_000  # executions in one execute_many


@dataclass(frozen=True)
class Submission:
    """One execution of a batch (``Conveyor.execute_many``)."""

    input: Any = None
    idempotency_key: str | None = None
    priority: int | None = None


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
        self._keyring: Keyring | None = None

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
        scoped = Conveyor(self.store, self.registry, workspace_id, self.limits)
        scoped._keyring = self._keyring
        return scoped

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validate a definition and return its normalized form (what gets stored)."""
        self.limits.check_definition(data)
        definition = validate(data, self.registry)
        stored = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
        if not stored.get("triggers"):
            # Definitions stored before triggers existed keep their digest.
            stored.pop("triggers", None)
        return stored

    async def apply(self, data: dict[str, Any]) -> VersionRef:
        """Store a definition as a new version of its workflow (unchanged: no new version).

        Its ``triggers:`` are brought in step in the same transaction; the returned
        ``VersionRef.triggers`` says what changed, with any webhook secret generated now
        (shown this once)."""
        return await self.store.apply_definition(
            self.workspace_id, self.validate(data), self.keyring.encrypt
        )

    @property
    def keyring(self) -> Keyring:
        """The keys that encrypt secrets at rest (loaded on first use, see secrets.py)."""
        if self._keyring is None:
            self._keyring = Keyring.load(self.store.db.url.render_as_string(hide_password=False))
        return self._keyring

    @keyring.setter
    def keyring(self, keyring: Keyring) -> None:
        self._keyring = keyring

    async def set_credential(
        self,
        name: str,
        type: str,
        data: dict[str, Any],
        *,
        description: str = "",
        replace: bool = False,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a credential (``replace``: create or replace one of that name). What comes
        back never holds a secret value."""

        def write(conn: Connection) -> dict[str, Any]:
            now = self.store.clock.now()
            args = (conn, self.workspace_id, name)
            if replace:
                try:
                    stored_credentials.get(*args)
                except ConveyorError:
                    pass
                else:
                    return stored_credentials.replace(
                        *args, type, data, description or None, user_id, now, self.keyring.encrypt
                    )
            return stored_credentials.create(
                *args, type, data, description, user_id, now, self.keyring.encrypt
            )

        return await self.store.write(write)

    async def credentials(self) -> list[dict[str, Any]]:
        return await self.store.read(stored_credentials.listing, self.workspace_id)

    async def delete_credential(self, name: str) -> None:
        await self.store.write(stored_credentials.remove, self.workspace_id, name)

    async def rotate_key(self) -> dict[str, int]:
        """Re-encrypt every stored secret (all workspaces) with the current key, the first
        of ``CONVEYOR_SECRET_KEY``; the others must still be given to decrypt."""
        keyring = self.keyring
        return await self.store.write(
            stored_credentials.reseal_all, keyring.decrypt, keyring.encrypt, keyring.needs_rotation
        )

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

    async def wait(self, execution_id: str) -> ExecutionStatus:
        """Wait for an execution of this workspace to finish; return its terminal status
        (its result: ``store.get_execution``). Told by the finishing commit, not by polling;
        NotFound for an unknown execution. Bound it with ``asyncio.timeout``."""
        return await self.store.wait_finished(execution_id, self.workspace_id)

    async def execute_many(
        self,
        workflow: str,
        submissions: Sequence[Submission],
        *,
        version: int | None = None,
        trigger_type: str = "manual",
        user: ExecutionUser | None = None,
    ) -> list[Enqueued | ConveyorError]:
        """Enqueue many executions of one workflow in ONE transaction, durable on return:
        each ``Submission`` with its own input, idempotency key and priority. The answer
        has one entry per submission, in order: its ``Enqueued`` (``created`` false for a
        key already used), or the error that refused it alone (a bad input, say); the
        others are enqueued all the same. An unknown workflow refuses the whole batch."""
        if len(submissions) > MAX_BATCH:
            raise InputError(f"a batch has at most {MAX_BATCH} executions")

        def build(ref: VersionRef, item: Submission) -> NewExecution:
            if ref.status == "archived":
                raise Conflict(f"workflow '{ref.workflow_name}' is archived; restore it first")
            input = {} if item.input is None else item.input
            self.limits.check_input(input)
            key = item.idempotency_key
            if key is not None and not 0 < len(key) <= 200:
                raise InputError("an idempotency key has 1 to 200 characters")
            check_input(_parsed(ref).input, input)
            new = new_execution(ref, input, self.workspace_id, user)
            new.trigger_type = trigger_type
            new.priority = item.priority if item.priority is not None else new.priority
            new.idempotency_key = key
            return new

        ref, results = await self.store.enqueue_many(
            self.workspace_id, workflow, version, build, list(submissions)
        )
        found = ref.workflow_id, ref.version
        return [r if isinstance(r, ConveyorError) else Enqueued(*r, *found) for r in results]

    async def trigger(
        self,
        workflow_id: str,
        input: Any,
        *,
        trigger_type: str,
        trigger_id: str,
        idempotency_key: str | None,
        record: Callable[[Connection, str, bool], None],
    ) -> Enqueued:
        """Start the active version of an ``active`` workflow for a trigger (webhook,
        schedule); ``record`` writes the trigger's own row in the same transaction, so what
        was accepted and what was recorded never disagree."""
        self.limits.check_input(input)

        def build(ref: VersionRef) -> NewExecution:
            if ref.status != "active":
                raise Conflict(
                    f"workflow '{ref.workflow_name}' is {ref.status}; triggers start only "
                    "active workflows"
                )
            check_input(_parsed(ref).input, input)
            new = new_execution(ref, input, self.workspace_id)
            new.trigger_type = trigger_type
            new.trigger_id = trigger_id
            new.idempotency_key = idempotency_key
            return new

        ref, execution_id, created = await self.store.enqueue_triggered(
            self.workspace_id, workflow_id, build, record
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
        version, input, reuse = retry_plan(old)
        return await self._rerun(old, version, input, reuse, "retry", user)

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
        check_replayable(old)
        ref = await self.store.find_version(
            self.workspace_id, old["workflow_id"], None if current else old["version"]
        )
        if input is not None:
            self.limits.check_input(input)
        version, payload, reuse = replay_plan(old, ref, from_node, input)
        return await self._rerun(old, version, payload, reuse, "replay", user)

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
        new = rerun_of(old, ref, input, trigger, user)
        execution_id, created = await self.store.enqueue(new, seed_from=(old["id"], reuse))
        return Enqueued(execution_id, created, ref.workflow_id, ref.version)

    async def bulk(
        self, action: BulkAction, selection: Selection, *, dry_run: bool = False
    ) -> BulkOutcome:
        """Cancel, retry or replay every execution of a selection (a list of full ids, or
        a filter) that the action applies to: cancel the unfinished ones, retry the failed,
        cancelled and timed-out ones, replay the finished ones. ``dry_run`` only counts.

        It runs here and now, in batches of ``BULK_BATCH``, each its own transaction, so
        it never holds the database for long and what it did is kept if it stops midway;
        more than ``BULK_LIMIT`` executions to act on is refused before anything is done.
        A filter is walked newest first by keyset, so executions created meanwhile (its own
        retries among them) are never visited."""
        if action.name == "replay" and not action.from_node:
            raise InputError("a bulk replay needs 'from_node'")
        eligible = sorted(_ELIGIBLE[action.name])
        if isinstance(selection, ExecutionFilter):
            by_status = await self.store.read(history.count_by_status, selection)
        else:
            if len(selection) > BULK_LIMIT:
                raise InputError(f"a bulk action names at most {BULK_LIMIT} executions")
            selection = list(dict.fromkeys(selection))
            by_status = await self.store.read(
                history.count_ids_by_status, self.workspace_id, selection
            )
        outcome = BulkOutcome(
            action.name,
            dry_run,
            selected=sum(by_status.values()),
            eligible=sum(n for status, n in by_status.items() if status in eligible),
            limit=BULK_LIMIT,
        )
        if dry_run:
            return outcome
        if outcome.eligible > BULK_LIMIT:
            raise InputError(
                f"the selection has {outcome.eligible} executions to {action.name}, more than "
                f"the {BULK_LIMIT} a bulk action takes: narrow it (a time range, a workflow)"
            )
        async for ids in self._batches(selection, eligible, outcome):
            outcome.add(ids, await self._act(action, ids))
        return outcome

    async def _batches(
        self, selection: Selection, eligible: list[str], outcome: BulkOutcome
    ) -> AsyncIterator[list[str]]:
        """The eligible ids of the selection, ``BULK_BATCH`` at a time (ids that are not
        executions of this workspace are counted as errors, ineligible ones as skipped)."""
        if not isinstance(selection, ExecutionFilter):
            for start in range(0, len(selection), BULK_BATCH):
                chunk = selection[start : start + BULK_BATCH]
                found = await self.store.read(history.statuses_of, self.workspace_id, chunk)
                for missing in (i for i in chunk if i not in found):
                    outcome.error(missing, f"execution '{missing}' not found")
                outcome.skipped += sum(1 for status in found.values() if status not in eligible)
                ids = [i for i in chunk if found.get(i) in eligible]
                if ids:
                    yield ids
            return
        after: tuple[datetime, str] | None = None
        visited = 0
        while visited < BULK_LIMIT:
            size = min(BULK_BATCH, BULK_LIMIT - visited)
            keys = await self.store.read(history.next_batch, selection, eligible, after, size)
            if not keys:
                return
            visited += len(keys)
            after = keys[-1]
            yield [execution_id for _created, execution_id in keys]

    async def _act(self, action: BulkAction, ids: list[str]) -> list[Any]:
        if action.name == "cancel":
            return list(await self.store.cancel_each(self.workspace_id, ids))
        now = self.store.clock.now()

        def build(conn: Connection, execution_id: str) -> Seeded:
            old = history.get_execution(conn, self.workspace_id, execution_id, now)
            if action.name == "retry":
                version, input, reuse = retry_plan(old)
                ref = workflows.find_version(conn, self.workspace_id, old["workflow_id"], version)
            else:
                check_replayable(old)
                pinned = None if action.current else old["version"]
                ref = workflows.find_version(conn, self.workspace_id, old["workflow_id"], pinned)
                _, input, reuse = replay_plan(old, ref, str(action.from_node), None)
            new = rerun_of(old, ref, input, action.name, action.user)
            return new, (old["id"], reuse)

        return list(await self.store.enqueue_each(build, ids))


BULK_LIMIT = 10_000
BULK_BATCH = 100
BULK_ERRORS = 100  # errors listed one by one; the rest are only counted
_ELIGIBLE: dict[str, frozenset[str]] = {
    "cancel": frozenset({"queued", "running", "waiting"}),
    "retry": frozenset(s.value for s in RETRYABLE),
    "replay": frozenset(s.value for s in TERMINAL),
}
Selection = list[str] | ExecutionFilter


@dataclass(frozen=True)
class BulkAction:
    """``name``: cancel, retry or replay; a replay restarts from ``from_node``, on the
    latest version when ``current``; new executions are started by ``user``."""

    name: Literal["cancel", "retry", "replay"]
    from_node: str | None = None
    current: bool = False
    user: ExecutionUser | None = None


@dataclass
class BulkOutcome:
    """``selected``: executions of the selection; ``eligible``: those the action applies
    to (what a run would touch). After a run: ``touched`` (cancelled or asked to stop, or
    a new execution enqueued), ``skipped`` (not or no longer eligible) and the errors."""

    action: str
    dry_run: bool
    selected: int
    eligible: int
    limit: int
    touched: int = 0
    skipped: int = 0
    errors_total: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def error(self, execution_id: str, detail: str) -> None:
        self.errors_total += 1
        if len(self.errors) < BULK_ERRORS:
            self.errors.append((execution_id, detail))

    def add(self, ids: list[str], results: list[Any]) -> None:
        """Count what acting on ``ids`` gave: a status (cancel) or an enqueued execution,
        a Conflict (the execution changed meanwhile: skipped), or another error."""
        for execution_id, result in zip(ids, results, strict=True):
            if isinstance(result, Conflict) or result in _FINISHED:
                self.skipped += 1
            elif isinstance(result, ConveyorError):
                self.error(execution_id, str(result))
            else:
                self.touched += 1


_FINISHED = frozenset(s.value for s in TERMINAL) - {"cancelled"}
_TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)
# A child execution's idempotency key: this prefix and the key its parent step gave.
CHILD_KEY = "child:"


class RuntimeServices:
    """What node code may ask of the platform (the ``Services`` of ``NodeContext``)."""

    def __init__(self, store: Store, keyring: Keyring | None = None) -> None:
        self.store = store
        self._keyring = keyring

    @property
    def keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = Keyring.load(self.store.db.url.render_as_string(hide_password=False))
        return self._keyring

    async def save_checkpoint(self, execution_id: str, node_id: str, key: str, value: Any) -> None:
        now = self.store.clock.now()
        await self.store.write(checkpoints.save, execution_id, node_id, key, value, now)

    async def checkpoints(self, execution_id: str, node_id: str) -> dict[str, Any]:
        return await self.store.read(checkpoints.load, execution_id, node_id)

    async def outbound_allowlist(self, workspace_id: str) -> tuple[str, ...]:
        return await self.store.read(accounts.outbound_allowlist, workspace_id)

    async def credentials(self, workspace_id: str) -> list[Credential]:
        rows = await self.store.read(stored_credentials.sealed, workspace_id)
        try:
            keyring = self.keyring
            return [
                Credential(
                    name,
                    kind,
                    json.loads(keyring.decrypt(sealed, stored_credentials.purpose(cid))),
                )
                for cid, name, kind, sealed in rows
            ]
        except SecretKeyError as exc:
            raise NodeError(f"credentials cannot be decrypted: {exc}", non_retryable=True) from None

    async def notify(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        return await self.store.write(
            inbox.create_notification,
            self.store.db.dialect,
            execution_id,
            node_id,
            payload,
            self.store.clock.now(),
        )

    async def create_task(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        return await self.store.write(
            inbox.create_task,
            self.store.db.dialect,
            execution_id,
            node_id,
            payload,
            self.store.clock.now(),
        )

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
        new.idempotency_key = f"{CHILD_KEY}{idempotency_key}"
        execution_id, _created = await self.store.enqueue(new)
        return execution_id

    async def wait_child(self, execution_id: str) -> dict[str, Any]:
        """Told by the child's finishing commit, in this process or another
        (``Store.wait_finished``), then its outcome read once."""
        await self.store.wait_finished(execution_id)
        row = await self.store.read(store_triggers.finished, execution_id, None)
        return {k: row[k] for k in ("status", "result", "error")}

    async def child_outcome(self, execution_id: str) -> dict[str, Any] | None:
        row = await self.store.execution_row(execution_id)
        if row["status"] not in _TERMINAL_VALUES:
            return None
        return {"status": row["status"], "result": row["result"], "error": row["error"]}

    async def children(self, parent_execution_id: str, parent_node_id: str) -> list[ChildRef]:
        parent = await self.store.execution_row(parent_execution_id)
        rows = await self.store.read(
            history.step_children,
            parent["workspace_id"],
            parent_execution_id,
            parent_node_id,
            parent["created_at"],
        )
        return [
            ChildRef(
                r["id"],
                r["idempotency_key"].removeprefix(CHILD_KEY),
                r["workflow_name"],
                r["input"],
            )
            for r in rows
        ]


def retry_plan(old: dict[str, Any]) -> tuple[int, Any, set[str]]:
    """What retrying ``old`` runs: its version, its input, and the nodes whose succeeded
    steps it reuses."""
    if old["status"] not in RETRYABLE:
        raise Conflict(
            f"execution {old['id']} is {old['status']}; only failed, cancelled "
            "or timed-out executions can be retried"
        )
    reuse = {s["node_id"] for s in old["steps"] if s["status"] == "succeeded"}
    return old["version"], old["input"], reuse


def check_replayable(old: dict[str, Any]) -> None:
    if old["status"] not in TERMINAL:
        raise Conflict(
            f"execution {old['id']} is {old['status']}; wait for it to finish "
            "or cancel it before replaying"
        )


def replay_plan(
    old: dict[str, Any], ref: VersionRef, from_node: str, input: Any
) -> tuple[int, Any, set[str]]:
    """What replaying ``old`` on ``ref`` from ``from_node`` runs (see ``retry_plan``)."""
    graph = Graph(_parsed(ref))
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
    return ref.version, old["input"] if input is None else input, reuse


def rerun_of(
    old: dict[str, Any], ref: VersionRef, input: Any, trigger: str, user: ExecutionUser | None
) -> NewExecution:
    new = new_execution(ref, input, old["workspace_id"], user)
    new.trigger_type = trigger
    new.retry_of = old["id"]
    return new


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
