"""The schedule commands the API, the CLI and the dashboard share: list, show (with the next
five fire times), create, enable, disable, delete, fires, and backfill.

Backfill starts one execution for each occurrence in a past range, through the same fire
rows as the scheduler: an occurrence that already started (or waits buffered) is never
started again, one recorded missed or skipped is started now (its row says so), and
repeating a backfill of the same range starts nothing. The overlap policy does not apply:
a backfill is an explicit request for those executions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from conveyor.app import Conveyor
from conveyor.engine.triggers import ScheduleSpec, schedule_problems
from conveyor.errors import Conflict, ConveyorError, InputError
from conveyor.store import controls, triggers, workflows
from conveyor.store import schedules as rows
from conveyor.triggers import cron
from conveyor.triggers.scheduler import NEVER, start

BACKFILL_LIMIT = 1000
NEXT_TIMES = 5
RECENT_FIRES = 20
FIRES_LIMIT = 1000


@dataclass(frozen=True)
class Backfill:
    """``occurrences`` in the range; ``started`` now; ``already`` started (or buffered)
    before, so left alone. A dry run starts nothing."""

    occurrences: int
    started: int
    already: int
    dry_run: bool
    execution_ids: tuple[str, ...] = ()


def spec_of(row: dict[str, Any]) -> ScheduleSpec:
    return ScheduleSpec.model_validate(row["spec"])


def next_fire_times(row: dict[str, Any], now: datetime, count: int = NEXT_TIMES) -> list[datetime]:
    """The next nominal times from now (what has not been handled yet, then the future)."""
    spec = spec_of(row)
    start = now
    if row["next_fire_at"] is not None and row["next_fire_at"] != NEVER:
        start = min(now, row["next_fire_at"])
    return cron.next_times(spec, start - cron.TICK, row["created_at"], count)


class Schedules:
    """Schedule commands acting in ``conveyor``'s workspace."""

    def __init__(self, conveyor: Conveyor) -> None:
        self.conveyor = conveyor
        self.store = conveyor.store
        self.workspace_id = conveyor.workspace_id

    async def list_schedules(self, workflow: str | None = None) -> list[dict[str, Any]]:
        """Live schedules of the workspace (of one workflow, by name or id)."""
        found = await self.store.read(rows.list_for_workspace, self.workspace_id)
        if workflow is not None:
            row = await self.store.read(workflows.get_workflow, self.workspace_id, workflow)
            found = [s for s in found if s["workflow_id"] == row["id"]]
        return [self._view(s) for s in found]

    async def get(self, schedule_id: str, *, recent: int = RECENT_FIRES) -> dict[str, Any]:
        """One schedule with its next fire times and recent occurrences."""
        row = await self.store.read(triggers.get, "schedule", self.workspace_id, schedule_id)
        workflow = await self.store.read(
            workflows.get_workflow, self.workspace_id, row["workflow_id"]
        )
        view = self._view({**row, "workflow_name": workflow["name"]})
        view["recent_fires"] = await self.fires(schedule_id, limit=recent)
        return view

    def _view(self, row: dict[str, Any]) -> dict[str, Any]:
        now = self.store.clock.now()
        next_fire_at = row["next_fire_at"]
        return {
            "id": row["id"],
            "key": row["key"],
            "workflow_id": row["workflow_id"],
            "workflow_name": row.get("workflow_name"),
            "source": row["source"],
            "enabled": row["enabled"],
            "spec": row["spec"],
            "next_fire_at": None if next_fire_at == NEVER else next_fire_at,
            "next_fire_times": next_fire_times(row, now),
            "last_fire_at": row["last_fire_at"],
            "created_at": row["created_at"],
            "updated_at": row["updated_at"],
        }

    async def create(self, workflow: str, spec: ScheduleSpec) -> dict[str, Any]:
        """A schedule made through the API or CLI (``source`` api): new versions of the
        workflow's definition leave it alone."""
        self.conveyor.limits.check_input(spec.input)
        if problems := schedule_problems(spec):
            raise InputError("; ".join(f"{name}: {message}" for name, message in problems))
        stored = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        now = self.store.clock.now()
        seal = self.conveyor.keyring.encrypt

        def write(conn: Connection) -> str:
            row = workflows.get_workflow(conn, self.workspace_id, workflow)
            if row["status"] == "archived":
                raise Conflict(f"workflow '{row['name']}' is archived; restore it first")
            change = triggers.create(
                conn, "schedule", self.workspace_id, row["id"], stored, now, seal
            )
            self.store.db.dialect.notify(conn, controls.WAKE_CHANNEL, "triggers")
            return change.id

        return await self.get(await self.store.write(write))

    async def set_enabled(self, schedule_id: str, enabled: bool) -> dict[str, Any]:
        """Enabling again fires from now on: the time it was disabled is not caught up."""
        await self.store.write(
            triggers.set_enabled,
            "schedule",
            self.workspace_id,
            schedule_id,
            enabled,
            self.store.clock.now(),
        )
        return await self.get(schedule_id)

    async def delete(self, schedule_id: str) -> None:
        await self.store.write(
            triggers.delete, "schedule", self.workspace_id, schedule_id, self.store.clock.now()
        )

    async def fires(
        self, schedule_id: str, *, status: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Occurrences newest first, with reasons and the executions they started."""
        if status is not None and status not in rows.FIRE_STATUSES:
            raise InputError(f"unknown status '{status}': use {', '.join(rows.FIRE_STATUSES)}")
        if not 1 <= limit <= FIRES_LIMIT:
            raise InputError(f"limit is 1 to {FIRES_LIMIT}")
        await self.store.read(triggers.get, "schedule", self.workspace_id, schedule_id)
        found = await self.store.read(rows.list_fires, schedule_id, status, limit)
        return [{k: v for k, v in f.items() if k != "schedule_id"} for f in found]

    async def backfill(
        self, schedule_id: str, start: datetime, end: datetime, *, dry_run: bool = False
    ) -> Backfill:
        """Start the occurrences in [start, end) (see the module doc). Times after now are
        left to the scheduler; more than BACKFILL_LIMIT occurrences are refused."""
        now = self.store.clock.now()
        start, end = _range(start, end, now)
        row = await self.store.read(triggers.get, "schedule", self.workspace_id, schedule_id)
        found = cron.between(spec_of(row), start, end, row["created_at"], BACKFILL_LIMIT + 1)
        if len(found) > BACKFILL_LIMIT:
            raise InputError(
                f"the range holds more than {BACKFILL_LIMIT} occurrences; a backfill starts at "
                f"most {BACKFILL_LIMIT}: split it into shorter ranges"
            )
        if dry_run:
            known = await self.store.read(rows.recorded, schedule_id, found)
            already = sum(1 for f in known.values() if f.status in ("started", "buffered"))
            return Backfill(len(found), 0, already, True)

        def write(conn: Connection) -> tuple[list[str], int]:
            schedule = rows.lock_for_backfill(conn, self.workspace_id, schedule_id)
            return _backfill(self, conn, schedule, found)

        started, already = await self.store.write(write)
        if started:
            self.store.wake("queued")
        return Backfill(len(found), len(started), already, False, tuple(started))


def _range(start: datetime, end: datetime, now: datetime) -> tuple[datetime, datetime]:
    if start.tzinfo is None or end.tzinfo is None:
        raise InputError("give start and end with a time zone (e.g. 2026-05-01T00:00:00Z)")
    if start.year < 1970 or end.year > 9000:
        raise InputError("start and end lie between 1970 and 9000")
    start, end = start.astimezone(UTC), min(end.astimezone(UTC), now)
    if start >= end:
        raise InputError("start must be before end (and before now)")
    if end - start > timedelta(days=366 * 10):
        raise InputError("a backfill covers at most ten years")
    return start, end


def _backfill(
    commands: Schedules, conn: Connection, schedule: Any, found: list[datetime]
) -> tuple[list[str], int]:
    now = commands.store.clock.now()
    known = rows.recorded(conn, schedule.id, found)
    started: list[str] = []
    already = 0
    for nominal in found:
        existing = known.get(nominal)
        if existing is not None and existing.status in ("started", "buffered"):
            already += 1
            continue
        try:
            execution_id = start(commands.store, conn, schedule, nominal)
        except ConveyorError as exc:
            raise InputError(
                f"cannot start the occurrence at {nominal.isoformat()}: {exc}"
            ) from exc
        reason = "started by a backfill"
        if existing is not None:
            was = f"{reason} (it was {existing.status}: {existing.reason or 'no reason'})"
            # Held under the schedule's lock (lock_for_backfill), so the row cannot change.
            rows.mark(
                conn, existing.id, "started", was, execution_id, only_if=("missed", "skipped")
            )
        else:
            rows.record(conn, schedule.id, nominal, "started", reason, execution_id, now)
        started.append(execution_id)
    return started, already
