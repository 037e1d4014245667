"""Running an execution in this process with the live node table, and the final report."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

from conveyor.app import Conveyor
from conveyor.cli.base import as_json, err, open_conveyor, registry_for
from conveyor.cli.display import LiveNodes, duration, live_view, styled, summary_table
from conveyor.cli.exits import FAILED, INTERRUPTED, OK, TERMINATED
from conveyor.worker import Worker


async def watch(conveyor: Conveyor, execution_id: str) -> dict[str, Any]:
    """Run an enqueued execution in this process with the live node table."""
    detail = await conveyor.store.get_execution(conveyor.workspace_id, execution_id)
    ref = await conveyor.store.find_version(
        conveyor.workspace_id, detail["workflow_id"], detail["version"]
    )
    order = [(n["id"], n["type"]) for n in ref.definition["nodes"]]
    live = LiveNodes(execution_id, order, detail["steps"])
    conveyor.store.listeners.append(live.on_events)
    worker = Worker(conveyor.store, conveyor.registry, conveyor.store.clock, limits=conveyor.limits)
    with live_view(live, err.console):
        await worker.run_one(execution_id)
    final = await conveyor.store.get_execution(conveyor.workspace_id, execution_id)
    final["order"] = [n for n, _ in order]
    return final


def report(detail: dict[str, Any]) -> int:
    """Summary on stderr, result (or error) as JSON on stdout; the exit code."""
    err.print(summary_table(detail, detail.get("order")))
    status = detail["status"]
    err.print("status:", styled(status), duration(detail["started_at"], detail["finished_at"]))
    if status == "succeeded":
        print(as_json(detail["result"]))
        return OK
    if detail["error"]:
        err.print(f"error: {detail['error'].get('message')}", style="red", markup=False)
    print(as_json({"status": status, "error": detail["error"]}))
    return FAILED


def foreground(work: Coroutine[Any, Any, int]) -> int:
    """Run ``work`` (which runs an execution here) to its exit code. Ctrl-C (130) and
    SIGTERM (143) both cancel it, so the execution is recorded ``cancelled``: a foreground
    run never leaves an execution ``running`` behind with nobody to finish it."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        terminated: list[bool] = []

        def terminate() -> None:
            terminated.append(True)
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            return await work
        except asyncio.CancelledError:
            if terminated:
                return TERMINATED
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        code = INTERRUPTED
    if code in (INTERRUPTED, TERMINATED):
        what = "interrupted" if code == INTERRUPTED else "terminated"
        err.print(f"{what}: the execution was recorded as cancelled", style="magenta")
    return code


def follow(database: str, execution_id: str, registry: Any = None) -> int:
    """Run an enqueued execution in this process with live progress (``--wait``)."""

    async def go() -> int:
        conveyor = await open_conveyor(database, registry=registry or registry_for([], False))
        try:
            return report(await watch(conveyor, execution_id))
        finally:
            conveyor.close()

    return foreground(go())


def enqueued_or_follow(database: str, enqueued: Any, wait: bool) -> int:
    if not wait:
        print(enqueued.execution_id)
        return OK
    return follow(database, enqueued.execution_id)
