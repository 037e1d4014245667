"""What to do with a schedule's due occurrences: catch-up and overlap, as pure decisions.

Catch-up. An occurrence handled more than ``misfire_grace`` after its start time (nominal
time + jitter) is *late*: the scheduler was not running, or the workflow was paused.
``skip`` records every late occurrence ``missed``; ``latest`` starts the latest late one
(unless a timely one is due too) and records the others ``missed``; ``all`` starts the late
ones no older than ``catchup_window``, in order, and records older ones ``missed``.

The scheduler never writes an unbounded number of rows for one schedule: of the
occurrences that are certainly missed, the first ``RECORD_LIMIT`` get a row each and the
rest one summary row; at most ``RECORD_LIMIT`` more are handled per pass, the rest next pass.

Overlap, when an execution the schedule started earlier has not finished: ``skip`` records
the occurrence skipped; ``buffer_one`` keeps one occurrence buffered (started when the
previous execution finishes), skipping more; ``buffer_all`` buffers every one;
``cancel_previous`` cancels the running one and starts; ``allow`` starts regardless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from conveyor.durations import format_duration
from conveyor.engine.triggers import ScheduleSpec
from conveyor.triggers import cron

RECORD_LIMIT = 1000
COUNT_CAP = 100_000


@dataclass(frozen=True)
class Occurrence:
    """One occurrence to write: ``fire`` (overlap decides how) or ``missed``/``skipped``
    with its reason."""

    nominal: datetime
    action: Literal["fire", "missed", "skipped"]
    reason: str | None = None


@dataclass(frozen=True)
class DuePlan:
    occurrences: list[Occurrence]
    next_fire_at: datetime | None


@dataclass(frozen=True)
class Due:
    """A schedule as the scheduler sees it: ``blocked`` says why it may not start
    executions now (its workflow is paused), so its occurrences are recorded skipped."""

    id: str
    spec: ScheduleSpec
    anchor: datetime
    next_fire_at: datetime
    blocked: str | None = None


def plan_due(due: Due, now: datetime) -> DuePlan:
    """The occurrences from ``due.next_fire_at`` that are due at ``now``, each with what
    to do, and the next nominal time to look at."""
    spec = due.spec
    cut = _cut(spec, now)
    old, old_more = _old(due, cut)
    recent, next_fire_at = _recent(due, max(due.next_fire_at, cut), now)
    late = [n for n in recent if _late(due, n, now)]
    timely = [n for n in recent if not _late(due, n, now)]
    chosen_old: datetime | None = None
    if spec.catchup == "latest" and not late and not timely and old:
        chosen_old = old_more[1] if old_more is not None else old[-1]
    plan = [_missed(due, n, now) for n in old if n != chosen_old]
    if old_more is not None and old_more[0] != chosen_old:
        first_unlisted, last_old, count = old_more
        plan.append(_summary(due, first_unlisted, last_old, count, now))
    if chosen_old is not None:
        plan.append(_fire(due, chosen_old))
    latest_late = late[-1] if late and not timely else None
    window_start = now - spec.catchup_window
    for nominal in recent:
        in_window = spec.catchup == "all" and nominal >= window_start
        if nominal in timely or in_window or nominal == latest_late:
            plan.append(_fire(due, nominal))
        else:
            plan.append(_missed(due, nominal, now))
    plan.sort(key=lambda o: o.nominal)
    return DuePlan(plan, next_fire_at)


def _cut(spec: ScheduleSpec, now: datetime) -> datetime:
    """Before this instant every occurrence is certainly late (and for ``all``, also
    outside the window): those are ``missed`` but for ``latest``'s one."""
    certainly_late = now - spec.misfire_grace - (spec.jitter or timedelta(0))
    if spec.catchup == "all":
        return min(certainly_late, now - spec.catchup_window)
    return certainly_late


def _old(due: Due, cut: datetime) -> tuple[list[datetime], tuple[datetime, datetime, int] | None]:
    """Occurrences in [next_fire_at, cut): the first RECORD_LIMIT, and when there are
    more, (the first unlisted one, the last one, how many unlisted)."""
    if due.next_fire_at >= cut:
        return [], None
    listed = cron.between(due.spec, due.next_fire_at, cut, due.anchor, RECORD_LIMIT + 1)
    if len(listed) <= RECORD_LIMIT:
        return listed, None
    first_unlisted = listed[RECORD_LIMIT]
    last = cron.last_before(due.spec, cut, first_unlisted, due.anchor) or first_unlisted
    count = cron.count_between(due.spec, first_unlisted, cut, due.anchor, COUNT_CAP)
    return listed[:RECORD_LIMIT], (first_unlisted, last, count)


def _recent(due: Due, start: datetime, now: datetime) -> tuple[list[datetime], datetime | None]:
    """Due occurrences from ``start`` (at most RECORD_LIMIT) and the next nominal time."""
    found: list[datetime] = []
    for nominal in cron.occurrences(due.spec, start - cron.TICK, due.anchor):
        if len(found) >= RECORD_LIMIT or start_time(due, nominal) > now:
            return found, nominal
        found.append(nominal)
    return found, None


def start_time(due: Due, nominal: datetime) -> datetime:
    return nominal + cron.jitter(due.spec, due.id, nominal)


def _late(due: Due, nominal: datetime, now: datetime) -> bool:
    return now - start_time(due, nominal) > due.spec.misfire_grace


def _fire(due: Due, nominal: datetime) -> Occurrence:
    if due.blocked is not None:
        return Occurrence(nominal, "skipped", due.blocked)
    return Occurrence(nominal, "fire")


def _missed(due: Due, nominal: datetime, now: datetime) -> Occurrence:
    if due.blocked is not None:
        return Occurrence(nominal, "skipped", due.blocked)
    spec = due.spec
    late_by = format_duration(now - start_time(due, nominal))
    grace = format_duration(spec.misfire_grace)
    why = f"handled {late_by} late (misfire_grace {grace}): no scheduler ran in time"
    if spec.catchup == "latest":
        why += "; catch-up 'latest' runs only the latest late occurrence"
    elif spec.catchup == "all":
        window = format_duration(spec.catchup_window)
        why += f"; older than the catch-up window ({window})"
    else:
        why += "; catch-up 'skip'"
    return Occurrence(nominal, "missed", why)


def _summary(due: Due, first: datetime, last: datetime, count: int, now: datetime) -> Occurrence:
    more = f"{count}" if count < COUNT_CAP else f"at least {COUNT_CAP}"
    reason = (
        f"{more} occurrences from {first.isoformat()} to {last.isoformat()} were missed "
        f"(recorded as this one row, after {RECORD_LIMIT} recorded one by one)"
    )
    if due.blocked is not None:
        return Occurrence(first, "skipped", f"{due.blocked}: {reason}")
    return Occurrence(first, "missed", reason)


OverlapAction = Literal["start", "skip", "buffer", "cancel_and_start"]


def overlap(spec: ScheduleSpec, running: bool, buffered: int) -> tuple[OverlapAction, str | None]:
    """What an occurrence that fires does, given whether an execution the schedule started
    is still unfinished and how many occurrences wait buffered. Buffered ones keep their
    order: while one waits, a new one queues behind it."""
    policy = spec.overlap
    if policy in ("buffer_one", "buffer_all") and buffered and not running:
        running = True  # the buffered one starts first (see Scheduler)
    if not running or policy == "allow":
        return "start", None
    if policy == "skip":
        return "skip", "the previous execution was still running (overlap 'skip')"
    if policy == "cancel_previous":
        return "cancel_and_start", None
    if policy == "buffer_one" and buffered >= 1:
        return "skip", "an occurrence was already buffered (overlap 'buffer_one')"
    return "buffer", None
