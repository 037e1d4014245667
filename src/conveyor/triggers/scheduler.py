"""The scheduler: every process runs one (``conveyor server`` and each ``conveyor worker``,
unless turned off), and each occurrence of a schedule still starts one execution.

A tick reads the schedules that may be due, then handles each in its own transaction that
holds the schedule's row (see ``store/schedules.py``): compute the first nominal time if it
is not known yet, start any buffered occurrence whose previous execution finished, plan the
due occurrences (catch-up, ``policies.plan_due``), apply the overlap policy to each one that
fires, write every occurrence's row, enqueue the executions and advance ``next_fire_at``.
Between ticks it sleeps until the earliest next time, at most ``poll`` (so schedules created
or edited by other processes are noticed within it).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from conveyor import failpoints
from conveyor.app import Conveyor, new_execution
from conveyor.engine.definition import parse_definition
from conveyor.engine.inputs import check_input
from conveyor.engine.triggers import ScheduleSpec
from conveyor.errors import ConveyorError
from conveyor.store import Store, controls, workflows
from conveyor.store import schedules as rows
from conveyor.triggers import cron, policies

log = logging.getLogger(__name__)
# next_fire_at of a schedule that will never fire again (a cron date that never comes).
NEVER = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass
class Handled:
    """What one schedule's transaction did (for waking workers and for logs)."""

    started: list[str] = field(default_factory=list)
    cancelling: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1


def idempotency_key(schedule_id: str, nominal: datetime) -> str:
    return f"schedule:{schedule_id}:{nominal.astimezone(UTC).isoformat()}"


def start(store: Store, conn: Connection, schedule: Any, nominal: datetime) -> str:
    """Enqueue the execution of one occurrence: the workflow's latest version with the
    schedule's input. Raises ConveyorError (in a savepoint: nothing is left behind) when
    it cannot start, e.g. an input the workflow's input schema refuses."""
    spec = ScheduleSpec.model_validate(schedule.spec)
    with conn.begin_nested():
        pending = conn.info.get(controls.PENDING_EVENTS, [])
        announced = len(pending)
        try:
            ref = workflows.find_version(conn, schedule.workspace_id, schedule.workflow_id)
            check_input(parse_definition(ref.definition).input, spec.input)
            new = new_execution(ref, spec.input, schedule.workspace_id)
            new.trigger_type = "schedule"
            new.trigger_id = schedule.id
            new.idempotency_key = idempotency_key(schedule.id, nominal)
            execution_id, _created = store.enqueue_in(conn, new)
        except ConveyorError:
            del conn.info.get(controls.PENDING_EVENTS, [])[announced:]
            raise
    return execution_id


def handle(conn: Connection, store: Store, schedule_id: str) -> Handled | None:
    """One schedule, in the caller's transaction (see the module doc)."""
    schedule = rows.lock(conn, schedule_id)
    if schedule is None:
        return None
    now = store.clock.now()
    spec = ScheduleSpec.model_validate(schedule.spec)
    done = Handled()
    next_fire_at = schedule.next_fire_at
    if next_fire_at is None:
        # New, re-enabled or retimed: from the moment that happened, so occurrences since
        # then follow the catch-up policy even if no scheduler ran meanwhile.
        next_fire_at = next(cron.occurrences(spec, schedule.updated_at, schedule.created_at), NEVER)
    blocked = None
    if schedule.workflow_status != "active":
        blocked = f"the workflow is {schedule.workflow_status}"
    running = rows.unfinished(conn, schedule.workflow_id, schedule_id)
    waiting = rows.buffered(conn, schedule_id)
    last_started = None
    if waiting and not running and blocked is None:
        fire_id, nominal = waiting.pop(0)
        running = _start_buffered(store, conn, schedule, fire_id, nominal, done)
        last_started = nominal if running else None
    due = policies.Due(schedule.id, spec, schedule.created_at, next_fire_at, blocked)
    plan = policies.plan_due(due, now) if next_fire_at != NEVER else None
    if plan is not None:
        known = rows.recorded(conn, schedule_id, [o.nominal for o in plan.occurrences])
        waiting_count = len(waiting)
        for occurrence in plan.occurrences:
            if occurrence.nominal in known:
                continue  # a backfill or an earlier pass already has it
            status = _occur(store, conn, schedule, spec, occurrence, running, waiting_count, done)
            if status == "started":
                last_started = occurrence.nominal
            elif status == "buffered":
                waiting_count += 1
        next_fire_at = plan.next_fire_at or NEVER
    rows.advance(conn, schedule_id, next_fire_at, last_started)
    return done


def _start_buffered(
    store: Store, conn: Connection, schedule: Any, fire_id: int, nominal: datetime, done: Handled
) -> list[str]:
    try:
        execution_id = start(store, conn, schedule, nominal)
    except ConveyorError as exc:
        rows.mark(conn, fire_id, "skipped", f"could not start: {exc}", None, only_if=("buffered",))
        done.count("skipped")
        return []
    rows.mark(conn, fire_id, "started", None, execution_id, only_if=("buffered",))
    done.started.append(execution_id)
    done.count("started")
    return [execution_id]


def _occur(
    store: Store,
    conn: Connection,
    schedule: Any,
    spec: ScheduleSpec,
    occurrence: policies.Occurrence,
    running: list[str],
    buffered: int,
    done: Handled,
) -> str:
    """Write one occurrence (and start its execution); return the status written.
    ``running`` is updated in place with what this occurrence started."""
    now = store.clock.now()
    nominal = occurrence.nominal
    if occurrence.action != "fire":
        rows.record(conn, schedule.id, nominal, occurrence.action, occurrence.reason, None, now)
        done.count(occurrence.action)
        return occurrence.action
    action, reason = policies.overlap(spec, bool(running), buffered)
    if action in ("skip", "buffer"):
        status = "skipped" if action == "skip" else "buffered"
        rows.record(conn, schedule.id, nominal, status, reason, None, now)
        done.count(status)
        return status
    if action == "cancel_and_start":
        for execution_id in running:
            outcome = controls.cancel(
                conn, store.db.dialect, schedule.workspace_id, execution_id, now
            )
            if outcome == "running":
                done.cancelling.append(execution_id)
        running.clear()
    try:
        execution_id = start(store, conn, schedule, nominal)
    except ConveyorError as exc:
        rows.record(conn, schedule.id, nominal, "skipped", f"could not start: {exc}", None, now)
        done.count("skipped")
        return "skipped"
    rows.record(conn, schedule.id, nominal, "started", None, execution_id, now)
    running.append(execution_id)
    done.started.append(execution_id)
    done.count("started")
    return "started"


class Scheduler:
    """The loop. ``tick`` is one pass (tests drive it with a fake clock); ``serve`` runs
    passes until ``stop`` is set."""

    def __init__(self, conveyor: Conveyor, *, poll: timedelta = timedelta(seconds=1)) -> None:
        self.store = conveyor.store
        self.poll = poll

    async def tick(self) -> datetime | None:
        """Handle every schedule that is due; return when to look again: the earliest next
        nominal time, or when a jittered occurrence starts. Never a time already past: what
        is still due after a pass (a schedule that failed) waits for the next poll, since
        looking again at once would only spin."""
        now = self.store.clock.now()
        starts: list[datetime] = []
        for candidate in await self.store.read(rows.candidates, now):
            try:
                start = _starts_at(candidate)
            except ValueError:
                start = None  # handle() logs what is wrong with it
            if start is not None and start > now:
                starts.append(start)
                continue
            try:
                await failpoints.reached("schedule.before_fire")
                done = await self.store.write(handle, self.store, candidate.id)
            except (ConveyorError, SQLAlchemyError) as exc:
                # Another scheduler's concurrent write (a unique row it committed first) or
                # a database hiccup: the next tick looks again; nothing is half-written.
                log.warning(
                    "schedule %s not handled this tick: %s",
                    candidate.id,
                    exc,
                    extra={"action": "schedule_failed", "schedule": candidate.id},
                )
                continue
            except Exception:
                # A bug or a stored spec this version cannot read: log it loudly, and keep
                # the other schedules firing.
                log.exception(
                    "schedule %s failed",
                    candidate.id,
                    extra={"action": "schedule_failed", "schedule": candidate.id},
                )
                continue
            if done is not None:
                if done.started:
                    await failpoints.reached("schedule.after_fire")
                self._announce(candidate.id, done)
        due: datetime | None = await self.store.read(rows.next_due)
        if due is not None and due <= now:
            return min(starts, default=None)
        return due

    def _announce(self, schedule_id: str, done: Handled) -> None:
        if done.started:
            self.store.wake("queued")
        for execution_id in done.cancelling:
            self.store.wake(controls.control_message(execution_id, "cancel"))
        if done.counts:
            log.info(
                "schedule %s: %s",
                schedule_id,
                ", ".join(f"{n} {status}" for status, n in sorted(done.counts.items())),
                extra={"action": "schedule_fired", "schedule": schedule_id, **done.counts},
            )

    async def serve(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; a failing tick is logged and retried next poll."""
        while not stop.is_set():
            due: datetime | None = None
            try:
                due = await self.tick()
            except (ConveyorError, SQLAlchemyError) as exc:
                log.warning("scheduler tick failed: %s", exc, extra={"action": "tick_failed"})
            except Exception:
                # The loop must outlive any one tick, or schedules would stop silently.
                log.exception("scheduler tick failed", extra={"action": "tick_failed"})
            timeout = self.poll.total_seconds()
            if due is not None:
                until = (due - self.store.clock.now()).total_seconds()
                timeout = min(timeout, max(until, 0.0))
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)


def _starts_at(candidate: Any) -> datetime | None:
    """When a due schedule's occurrence starts (its nominal time plus its jitter); None when
    it needs handling now (new, or with buffered occurrences). Until then it is not worth
    locking."""
    if candidate.next_fire_at is None or candidate.has_buffered:
        return None
    spec = ScheduleSpec.model_validate(candidate.spec)
    nominal: datetime = candidate.next_fire_at
    return nominal + cron.jitter(spec, candidate.id, nominal)
