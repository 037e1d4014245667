"""Rich rendering: the live node table of ``conveyor run`` and execution summaries."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from conveyor.store.executions import EventRecord

STYLES = {
    "pending": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "waiting": "blue",
    "succeeded": "green",
    "failed": "red",
    "skipped": "dim",
    "cancelled": "magenta",
    "interrupted": "yellow",
    "queued": "dim",
    "timed_out": "red",
}
_EVENT_STATUS = {
    "step.started": "running",
    "step.succeeded": "succeeded",
    "step.failed": "failed",
    "step.retrying": "retrying",
    "step.skipped": "skipped",
    "step.waiting": "waiting",
    "step.cancelled": "cancelled",
}


def styled(status: str) -> Text:
    return Text(status, style=STYLES.get(status, ""))


class LiveNodes:
    """Node statuses of one execution, updated from its events."""

    def __init__(
        self,
        execution_id: str,
        nodes: list[tuple[str, str]],
        steps: list[dict[str, Any]] | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.order = [n for n, _ in nodes]
        self.types = dict(nodes)
        self.status = dict.fromkeys(self.order, "pending")
        self.attempts = dict.fromkeys(self.order, 0)
        self.started: dict[str, float] = {}
        self.elapsed: dict[str, float] = {}
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed}/{task.total}"),
        )
        self.task = self.progress.add_task("progress", total=len(self.order))
        for step in steps or []:
            if step["node_id"] in self.status:
                self.status[step["node_id"]] = step["status"]
                self.attempts[step["node_id"]] = step["attempt"]
        self._count()

    def on_events(self, records: list[EventRecord]) -> None:
        for record in records:
            if record.execution_id != self.execution_id:
                continue
            status = _EVENT_STATUS.get(record.type)
            node_id = record.data.get("node_id")
            if status is None or node_id not in self.status:
                continue
            self.status[node_id] = status
            if status == "running":
                self.attempts[node_id] = int(record.data.get("attempt", 1))
                self.started[node_id] = time.monotonic()
            elif node_id in self.started and status != "retrying":
                self.elapsed[node_id] = time.monotonic() - self.started.pop(node_id)
        self._count()

    def _count(self) -> None:
        done = sum(s in ("succeeded", "failed", "skipped") for s in self.status.values())
        self.progress.update(self.task, completed=done)

    def __rich__(self) -> Group:
        table = Table(box=None, pad_edge=False)
        for header in ("node", "type", "status", "attempt", "time"):
            table.add_column(header)
        now = time.monotonic()
        for node_id in self.order:
            seconds = self.elapsed.get(node_id)
            if node_id in self.started:
                seconds = now - self.started[node_id]
            table.add_row(
                node_id,
                self.types[node_id],
                styled(self.status[node_id]),
                str(self.attempts[node_id] or ""),
                f"{seconds:.2f}s" if seconds is not None else "",
            )
        return Group(table, self.progress)


def live_view(nodes: LiveNodes, console: Console) -> AbstractContextManager[Any]:
    """The live node table on a terminal, cleared when done (the summary follows). Without
    one (a pipe, a log file, CI) nothing: a frame printed there would be a second table,
    timed by this process's clock rather than the stored step times the summary shows."""
    if not console.is_terminal:
        return nullcontext()
    return Live(nodes, console=console, refresh_per_second=10, transient=True)


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def summary_table(detail: dict[str, Any], order: list[str] | None = None) -> Table:
    """One row per node (in definition order when given): status, attempts, duration."""
    per_node: dict[str, dict[str, Any]] = {n: {} for n in order or []}
    for step in detail["steps"]:
        row = per_node.setdefault(step["node_id"], {})
        if not row:
            row.update(attempts=0, first=None, last=None)
        row["status"] = step["status"]
        row["type"] = step["node_type"]
        if step["attempt"]:
            row["attempts"] = max(row["attempts"], step["attempt"])
        row["first"] = row["first"] or step["started_at"]
        row["last"] = step["finished_at"] or row["last"]
    table = Table(title=f"execution {detail['id']}")
    for header in ("node", "type", "status", "attempts", "duration"):
        table.add_column(header)
    for node_id, row in per_node.items():
        if not row:
            continue
        table.add_row(
            node_id,
            row["type"],
            styled(row["status"]),
            str(row["attempts"] or "-"),
            duration(row["first"], row["last"]),
        )
    return table


def steps_table(detail: dict[str, Any]) -> Table:
    table = Table(title="steps (one row per attempt)")
    for header in ("node", "attempt", "status", "started", "duration", "error"):
        table.add_column(header, overflow="fold")
    for step in detail["steps"]:
        error = step["error"] or {}
        started = (
            step["started_at"].isoformat(timespec="milliseconds") if step["started_at"] else ""
        )
        table.add_row(
            step["node_id"],
            str(step["attempt"]),
            styled(step["status"]),
            started,
            duration(step["started_at"], step["finished_at"]),
            f"{error.get('type', '')}: {error.get('message', '')}" if error else "",
        )
    return table


def id_column(table: Table, ids: list[str]) -> None:
    """Ids are what people copy into the next command: never cut or wrapped; the other
    columns wrap instead."""
    table.add_column("id", no_wrap=True, min_width=max((len(i) for i in ids), default=2))


def executions_table(rows: list[dict[str, Any]]) -> Table:
    table = Table()
    id_column(table, [r["id"] for r in rows])
    for header in ("workflow", "status", "trigger", "created", "duration", "steps"):
        table.add_column(header, overflow="fold")
    for r in rows:
        done = r["steps_succeeded"] + r["steps_failed"] + r["steps_skipped"]
        table.add_row(
            r["id"],
            r["workflow_name"],
            styled(r["status"]),
            r["trigger_type"],
            r["created_at"].isoformat(timespec="seconds"),
            duration(r["started_at"], r["finished_at"]),
            f"{done}/{r['steps_total']}",
        )
    return table


def workflows_table(rows: list[dict[str, Any]]) -> Table:
    table = Table()
    for header in ("name", "version", "status", "finished", "succeeded"):
        table.add_column(header, overflow="fold")
    id_column(table, [r["id"] for r in rows])
    for r in rows:
        table.add_row(
            r["name"],
            str(r["latest_version"]),
            r["status"],
            str(r["executions_finished"]),
            str(r["executions_succeeded"]),
            r["id"],
        )
    return table
