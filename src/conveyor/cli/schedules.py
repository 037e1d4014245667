"""``conveyor schedules ...``: list, show (with the next five fire times), enable, disable,
delete and backfill schedules (the same commands as the API, triggers/schedules.py)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli.base import (
    DEFAULT_DATABASE_URL,
    HELP_FORMAT,
    DatabaseOpt,
    JsonOpt,
    as_json,
    guard,
    out,
    with_conveyor,
)
from conveyor.cli.exits import OK
from conveyor.errors import InputError

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.triggers.schedules import Schedules

schedules_app = typer.Typer(
    no_args_is_help=True,
    help="Schedules: when they fire next, what their occurrences did, backfills.",
    **HELP_FORMAT,
)
ScheduleArg = Annotated[str, typer.Argument(help="schedule id (see `conveyor schedules list`)")]


def _commands(conveyor: Conveyor) -> Schedules:
    from conveyor.triggers.schedules import Schedules

    return Schedules(conveyor)


def _when(value: Any) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


@schedules_app.command("list")
def schedules_list(
    workflow: Annotated[str | None, typer.Argument(help="only this workflow (name or id)")] = None,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    json_output: JsonOpt = False,
) -> None:
    """List the schedules of the workspace (or of one workflow)."""

    def body() -> int:
        async def go(conveyor: Conveyor) -> list[dict[str, Any]]:
            return await _commands(conveyor).list_schedules(workflow)

        found = with_conveyor(database, go)
        if json_output:
            print(as_json(found))
            return OK
        from rich.table import Table

        from conveyor.cli.display import id_column

        table = Table()
        id_column(table, [s["id"] for s in found])
        for header in ("workflow", "schedule", "timing", "enabled", "next fire (UTC)"):
            table.add_column(header, overflow="fold")
        for s in found:
            spec = s["spec"]
            timing = spec.get("cron") or f"every {spec.get('every')}"
            zone = spec.get("timezone", "UTC")
            next_time = s["next_fire_times"][0] if s["next_fire_times"] else None
            table.add_row(
                s["id"],
                s["workflow_name"] or s["workflow_id"],
                s["key"],
                f"{timing} ({zone})",
                "yes" if s["enabled"] else "no",
                _when(next_time),
            )
        out.print(table)
        return OK

    guard(body)


@schedules_app.command("show")
def schedules_show(
    schedule_id: ScheduleArg,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    json_output: JsonOpt = False,
) -> None:
    """A schedule: its spec, the next five fire times and its recent occurrences."""

    def body() -> int:
        async def go(conveyor: Conveyor) -> dict[str, Any]:
            return await _commands(conveyor).get(schedule_id, recent=10)

        found = with_conveyor(database, go)
        if json_output:
            print(as_json(found))
            return OK
        spec = found["spec"]
        out.print(f"schedule {found['key']} ({found['id']}), source {found['source']}")
        out.print(f"enabled: {'yes' if found['enabled'] else 'no'}")
        timing = spec.get("cron") or f"every {spec.get('every')}"
        out.print(f"timing: {timing} in {spec.get('timezone', 'UTC')}", markup=False)
        out.print(
            f"overlap: {spec.get('overlap', 'skip')}, catch-up: {spec.get('catchup', 'skip')}"
        )
        out.print("next fire times (UTC):")
        for when in found["next_fire_times"]:
            out.print(f"  {_when(when)}")
        out.print(f"last fired: {_when(found['last_fire_at'])}")
        if found["recent_fires"]:
            out.print("recent occurrences:")
        for fire in found["recent_fires"]:
            detail = fire["execution_id"] or fire["reason"] or ""
            line = f"  {_when(fire['nominal_at'])}  {fire['status']:<8}  {detail}"
            out.print(line, markup=False, highlight=False)
        return OK

    guard(body)


def _set_enabled(database: str, schedule_id: str, enabled: bool) -> None:
    def body() -> int:
        async def go(conveyor: Conveyor) -> dict[str, Any]:
            return await _commands(conveyor).set_enabled(schedule_id, enabled)

        found = with_conveyor(database, go)
        out.print(f"schedule {found['key']} {'enabled' if enabled else 'disabled'}")
        return OK

    guard(body)


@schedules_app.command("enable")
def schedules_enable(
    schedule_id: ScheduleArg, database: DatabaseOpt = DEFAULT_DATABASE_URL
) -> None:
    """Enable: it fires from now on (the time it was disabled is not caught up)."""
    _set_enabled(database, schedule_id, True)


@schedules_app.command("disable")
def schedules_disable(
    schedule_id: ScheduleArg, database: DatabaseOpt = DEFAULT_DATABASE_URL
) -> None:
    """Disable: it stops firing until enabled again."""
    _set_enabled(database, schedule_id, False)


@schedules_app.command("delete")
def schedules_delete(
    schedule_id: ScheduleArg, database: DatabaseOpt = DEFAULT_DATABASE_URL
) -> None:
    """Delete a schedule (one the definition declares comes back with its next version
    unless the definition drops it)."""

    def body() -> int:
        async def go(conveyor: Conveyor) -> None:
            await _commands(conveyor).delete(schedule_id)

        with_conveyor(database, go)
        out.print(f"schedule {schedule_id} deleted")
        return OK

    guard(body)


def _instant(value: str, name: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"{name} '{value}' is not an ISO 8601 time (e.g. 2026-05-01T00:00:00Z)"
        ) from None


@schedules_app.command("backfill")
def schedules_backfill(
    schedule_id: ScheduleArg,
    start: Annotated[str, typer.Option(help="first instant (ISO 8601 with a zone), included")],
    end: Annotated[str, typer.Option(help="end (ISO 8601 with a zone), excluded")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count")] = False,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Start one execution per occurrence in [start, end) that has not started before,
    and print how many (at most 1000 per backfill)."""

    def body() -> int:
        first, last = _instant(start, "--start"), _instant(end, "--end")

        async def go(conveyor: Conveyor) -> Any:
            return await _commands(conveyor).backfill(schedule_id, first, last, dry_run=dry_run)

        done = with_conveyor(database, go)
        if done.dry_run:
            todo = done.occurrences - done.already
            out.print(
                f"{done.occurrences} occurrences in the range; a backfill would start {todo} "
                f"({done.already} already started)"
            )
        else:
            out.print(
                f"started {done.started} executions for {done.occurrences} occurrences "
                f"({done.already} had already started)"
            )
        return OK

    guard(body)
