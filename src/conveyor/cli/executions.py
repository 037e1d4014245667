"""``conveyor executions ...`` and ``conveyor workflows ...``: history and run controls."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli.base import (
    DEFAULT_DATABASE_URL,
    HELP_FORMAT,
    DatabaseOpt,
    ExecutionArg,
    InputOpt,
    JsonOpt,
    PluginOpt,
    as_json,
    full_id,
    guard,
    open_conveyor,
    out,
    parse_input,
    run_async,
    with_conveyor,
)
from conveyor.cli.exits import OK

if TYPE_CHECKING:
    from conveyor.app import Conveyor

executions_app = typer.Typer(
    no_args_is_help=True, help="Read and control executions.", **HELP_FORMAT
)
workflows_app = typer.Typer(no_args_is_help=True, help="Store and list workflows.", **HELP_FORMAT)


def _enqueued_or_follow(database: str, enqueued: Any, wait: bool) -> int:
    from conveyor.cli.follow import enqueued_or_follow as run_or_print

    return run_or_print(database, enqueued, wait)


@workflows_app.command("apply")
def workflows_apply(
    file: Annotated[Path, typer.Argument(help="workflow definition (YAML or JSON)")],
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    plugin: PluginOpt = [],  # noqa: B006
) -> None:
    """Store a definition as the next version of its workflow."""

    def body() -> int:
        from conveyor.engine.definition import load_definition_file

        data = load_definition_file(file)

        async def go() -> Any:
            conveyor = await open_conveyor(database, plugin)
            try:
                return await conveyor.apply(data)
            finally:
                conveyor.close()

        ref = run_async(go())
        state = "stored" if ref.created else "unchanged"
        out.print(f"{ref.workflow_name} version {ref.version} {state} ({ref.workflow_id})")
        for change in ref.triggers:
            line = f"  {change.kind} {change.key} {change.change} ({change.id})"
            if change.token:
                line += f": /hooks/{change.token}"
            out.print(line, markup=False)
            if change.secret:
                out.print(f"    secret (shown only now): {change.secret}", markup=False)
        return OK

    guard(body)


@workflows_app.command("list")
def workflows_list(
    database: DatabaseOpt = DEFAULT_DATABASE_URL, json_output: JsonOpt = False
) -> None:
    """List the workflows of the workspace."""

    def body() -> int:
        async def go() -> list[dict[str, Any]]:
            conveyor = await open_conveyor(database)
            try:
                return await conveyor.store.list_workflows(conveyor.workspace_id)
            finally:
                conveyor.close()

        rows = run_async(go())
        if json_output:
            print(as_json(rows))
            return OK
        from conveyor.cli.display import workflows_table

        out.print(workflows_table(rows))
        return OK

    guard(body)


@executions_app.command("list")
def executions_list(
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    status: Annotated[str | None, typer.Option(help="only this status")] = None,
    workflow: Annotated[str | None, typer.Option(help="only this workflow (name or id)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    json_output: JsonOpt = False,
) -> None:
    """List executions, newest first."""

    def body() -> int:
        from conveyor.store.history import ExecutionFilter

        async def go() -> list[dict[str, Any]]:
            conveyor = await open_conveyor(database)
            try:
                workflow_id = None
                if workflow:
                    ref = await conveyor.store.find_version(conveyor.workspace_id, workflow)
                    workflow_id = ref.workflow_id
                return await conveyor.store.list_executions(
                    ExecutionFilter(
                        workspace_id=conveyor.workspace_id,
                        status=status,
                        workflow_id=workflow_id,
                        limit=limit,
                    )
                )
            finally:
                conveyor.close()

        rows = run_async(go())
        if json_output:
            print(as_json(rows))
            return OK
        from conveyor.cli.display import executions_table

        out.print(executions_table(rows))
        return OK

    guard(body)


@executions_app.command("show")
def executions_show(
    execution_id: Annotated[str, typer.Argument(help="execution id (or a unique prefix)")],
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    json_output: JsonOpt = False,
) -> None:
    """Show one execution: status, trigger data, and every step's input, output and error."""

    def body() -> int:
        async def go() -> dict[str, Any]:
            conveyor = await open_conveyor(database)
            try:
                return await conveyor.store.get_execution(conveyor.workspace_id, execution_id)
            finally:
                conveyor.close()

        detail = run_async(go())
        if json_output:
            print(as_json(detail))
            return OK
        _print_detail(detail)
        return OK

    guard(body)


def _print_detail(detail: dict[str, Any]) -> None:
    from conveyor.cli.display import duration, steps_table, styled

    out.print(
        f"[bold]{detail['id']}[/]  {detail['workflow_name']} v{detail['version']}  ",
        styled(detail["status"]),
        f"  trigger: {detail['trigger_type']}",
    )
    out.print(
        f"created {detail['created_at'].isoformat()}  duration "
        f"{duration(detail['started_at'], detail['finished_at']) or '-'}"
    )
    if detail.get("blocked_reason"):
        out.print(f"not running because: {detail['blocked_reason']}", markup=False, soft_wrap=True)
    out.print("input:", as_json(detail["input"]), markup=False, highlight=False)
    if detail["result"] is not None:
        out.print("result:", as_json(detail["result"]), markup=False, highlight=False)
    if detail["error"] is not None:
        error = _without_traceback(detail["error"])
        out.print("error:", as_json(error), markup=False, highlight=False, style="red")
    out.print(steps_table(detail))
    for step in detail["steps"]:
        if step["attempt"] == 0:
            continue
        index = f"step {step['step_index']}, " if step.get("step_index") else ""
        out.print(
            f"[bold]{step['node_id']}[/] ({index}attempt {step['attempt']}, {step['status']})"
        )
        for name in ("input", "output", "error", "logs"):
            value = _without_traceback(step[name]) if name == "error" else step[name]
            if value not in (None, [], {}):
                out.print(f"  {name}: {as_json(value)}", markup=False, highlight=False)
        trace = (step["error"] or {}).get("traceback")
        if trace:
            text = "\n".join("    " + line for line in str(trace).splitlines())
            out.print(f"  traceback:\n{text}", markup=False, highlight=False, soft_wrap=True)


def _without_traceback(error: Any) -> Any:
    """The traceback is printed as text on its own, not as one long JSON string."""
    if isinstance(error, dict) and "traceback" in error:
        return {k: v for k, v in error.items() if k != "traceback"}
    return error


@executions_app.command("cancel")
def executions_cancel(
    execution_id: ExecutionArg, database: DatabaseOpt = DEFAULT_DATABASE_URL
) -> None:
    """Cancel: queued or waiting ones at once, running ones within a second."""

    async def act(c: Conveyor) -> str:
        return await c.cancel(await full_id(c, execution_id))

    guard(
        lambda: _say(
            {
                "cancelled": "cancelled",
                "running": "cancel requested; its worker stops it within a second",
            },
            with_conveyor(database, act),
        )
    )


def _say(messages: dict[str, str], status: str) -> int:
    out.print(messages.get(status, f"nothing to do: the execution is already {status}"))
    return OK


def _set_paused(database: str, execution_id: str, paused: bool) -> int:
    async def act(c: Conveyor) -> str:
        full = await full_id(c, execution_id)
        return await (c.pause(full) if paused else c.resume(full))

    status = with_conveyor(database, act)
    out.print(f"{'paused' if paused else 'resumed'} (the execution is {status})")
    return OK


@executions_app.command("pause")
def executions_pause(
    execution_id: ExecutionArg, database: DatabaseOpt = DEFAULT_DATABASE_URL
) -> None:
    """Pause: start no new step (running steps finish) until resumed."""
    guard(lambda: _set_paused(database, execution_id, True))


@executions_app.command("resume")
def executions_resume(
    execution_id: ExecutionArg, database: DatabaseOpt = DEFAULT_DATABASE_URL
) -> None:
    """Resume a paused execution."""
    guard(lambda: _set_paused(database, execution_id, False))


@executions_app.command("signal")
def executions_signal(
    execution_id: ExecutionArg,
    name: Annotated[str, typer.Argument(help="signal name (a wait_for_event 'event')")],
    data: Annotated[str | None, typer.Option("--data", help="JSON payload or @FILE")] = None,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
) -> None:
    """Send a signal to an execution; a wait_for_event node waiting for it resumes."""

    def body() -> int:
        payload = parse_input(data) if data is not None else None

        async def act(c: Conveyor) -> int:
            return await c.signal(await full_id(c, execution_id), name, payload)

        out.print(f"signal {name} delivered (#{with_conveyor(database, act)})")
        return OK

    guard(body)


@executions_app.command("retry")
def executions_retry(
    execution_id: ExecutionArg,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    wait: Annotated[bool, typer.Option("--wait", help="run it here and follow it")] = False,
) -> None:
    """Retry from the failed step: a new execution reusing every step that succeeded."""

    async def act(c: Conveyor) -> Any:
        return await c.retry(await full_id(c, execution_id))

    guard(lambda: _enqueued_or_follow(database, with_conveyor(database, act), wait))


@executions_app.command("replay")
def executions_replay(
    execution_id: ExecutionArg,
    from_node: Annotated[str, typer.Option("--from", help="node to run again (and below)")],
    input: InputOpt = None,
    current: Annotated[
        bool,
        typer.Option("--current/--pinned", help="replay on the latest version or the pinned one"),
    ] = False,
    database: DatabaseOpt = DEFAULT_DATABASE_URL,
    wait: Annotated[bool, typer.Option("--wait", help="run it here and follow it")] = False,
) -> None:
    """Replay from a node: reuse the outputs above it, run it and everything below again."""

    def body() -> int:
        payload = parse_input(input) if input is not None else None

        async def act(c: Conveyor) -> Any:
            return await c.replay(
                await full_id(c, execution_id), from_node, input=payload, current=current
            )

        return _enqueued_or_follow(database, with_conveyor(database, act), wait)

    guard(body)
