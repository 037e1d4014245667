"""The invariant checker: what must hold after any scenario, judged from the rows and events
alone (GUARANTEES.md G1-G11), on either database.

``check(db)`` returns every violation found as a sentence (empty: all hold), so a test
asserts ``== []`` and a failure lists everything wrong at once. ``Snapshot`` catches a
finished execution that changed later (G7); ``LimitSampler`` watches the running counts
during a run (concurrency limits are judged at claim time, so only a sampler sees a breach).
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from conveyor.engine.definition import parse_definition
from conveyor.store import Database
from conveyor.store.tables import (
    events,
    executions,
    schedule_fires,
    steps,
    webhook_deliveries,
    workflow_versions,
    workflows,
)

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
FINISHED_STEP = frozenset({"succeeded", "failed", "skipped"})
STEP_END_EVENTS = frozenset({"step.succeeded", "step.failed", "step.skipped"})
TERMINAL_EVENTS = frozenset(f"execution.{s}" for s in TERMINAL)


@dataclass
class Rows:
    """Everything the checks read, in one read transaction."""

    executions: dict[str, dict[str, Any]]
    steps: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    events: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    definitions: dict[str, Any] = field(default_factory=dict)  # version id -> definition
    now: Any = None


@contextmanager
def snapshot(db: Database) -> Iterator[Connection]:
    """One consistent view of every table: a SQLite read transaction is one already (WAL);
    PostgreSQL needs REPEATABLE READ, or rows committed between two queries would make the
    execution and its events disagree while a scenario is still running."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def load(conn: Connection, ids: Iterable[str] | None = None) -> Rows:
    query = select(executions)
    if ids is not None:
        query = query.where(executions.c.id.in_(list(ids)))
    rows = Rows({r["id"]: dict(r) for r in conn.execute(query).mappings()})
    wanted = set(rows.executions)
    for row in conn.execute(select(steps).order_by(steps.c.id)).mappings():
        if row["execution_id"] in wanted:
            rows.steps[row["execution_id"]].append(dict(row))
    for row in conn.execute(
        select(events).order_by(events.c.execution_id, events.c.seq)
    ).mappings():
        if row["execution_id"] in wanted:
            rows.events[row["execution_id"]].append(dict(row))
    versions = {e["version_id"] for e in rows.executions.values()}
    for version_id, definition in conn.execute(
        select(workflow_versions.c.id, workflow_versions.c.definition)
    ):
        if version_id in versions:
            rows.definitions[version_id] = parse_definition(definition)
    rows.now = conn.execute(select(func.current_timestamp())).scalar()
    return rows


def check(
    db: Database,
    ids: Iterable[str] | None = None,
    *,
    settled: bool = True,
    at_most_once: Iterable[str] = (),
) -> list[str]:
    """Every violation among the executions ``ids`` (default: all). ``settled``: the
    scenario is over, so nothing may still be queued or running. ``at_most_once``: node
    ids that must never have started twice (besides those with ``max_attempts: 1``)."""
    with snapshot(db) as conn:
        rows = load(conn, ids)
        problems = _triggers_once(conn)
        if ids is None:
            problems += _counters_agree(conn)
    once = frozenset(at_most_once)
    for execution_id, execution in rows.executions.items():
        problems += _accepted_ends(execution, rows, settled)
        problems += _steps_once(execution_id, rows, once)
        problems += _order(execution_id, rows)
        problems += _event_sequence(execution, rows)
        problems += _step_events_once(execution_id, rows)
        problems += _final_is_final(execution, rows)
        problems += _lease(execution, rows)
    return problems


def _accepted_ends(execution: dict[str, Any], rows: Rows, settled: bool) -> list[str]:
    """G1: terminal, or waiting for something that will come (a timer, a signal, a resume)."""
    status, eid = execution["status"], execution["id"]
    if status in TERMINAL:
        return []
    if status == "waiting":
        waiting = [s for s in rows.steps[eid] if s["status"] == "waiting"]
        if execution["paused"] or waiting or execution["wait_reason"]:
            return []
        return [f"{eid}: waiting with nothing to wait for"]
    if settled:
        return [f"{eid}: still {status} after the scenario ended ({execution['wait_reason']})"]
    return []


def _steps_once(execution_id: str, rows: Rows, once: frozenset[str]) -> list[str]:
    """G2: one committed success per node. G3: an at-most-once node started at most once."""
    problems = []
    succeeded = Counter(
        s["node_id"] for s in rows.steps[execution_id] if s["status"] == "succeeded"
    )
    problems += [f"{execution_id}:{n} succeeded {k} times" for n, k in succeeded.items() if k > 1]
    definition = rows.definitions.get(rows.executions[execution_id]["version_id"])
    if definition is None:
        return [*problems, f"{execution_id}: its version's definition is missing"]
    single = set(once) | {
        n.id for n in definition.nodes if definition.retry_policy(n).max_attempts == 1
    }
    started = Counter(
        s["node_id"]
        for s in rows.steps[execution_id]
        if s["node_id"] in single and s["started_at"] is not None and s["attempt"] > 0
    )
    problems += [
        f"{execution_id}:{n} is at-most-once but started {k} times"
        for n, k in started.items()
        if k > 1
    ]
    return problems


def _order(execution_id: str, rows: Rows) -> list[str]:
    """Every step started after its upstream steps ended (``wait_for: first``: after one of
    them), judged by event order, not clocks (workers' clocks may disagree)."""
    definition = rows.definitions.get(rows.executions[execution_id]["version_id"])
    if definition is None:
        return []
    ended: dict[str, int] = {}
    for s in rows.steps[execution_id]:
        if s["status"] in ("succeeded", "skipped"):
            ended.setdefault(s["node_id"], 0)  # copied by a retry or replay: no events
    for event in rows.events[execution_id]:
        node_id = event["data"].get("node_id") if isinstance(event["data"], dict) else None
        if event["type"] in STEP_END_EVENTS and node_id is not None and not ended.get(node_id):
            ended[node_id] = event["seq"]
    upstream: dict[str, set[str]] = defaultdict(set)
    for edge in definition.all_edges():
        upstream[edge.target].add(edge.source)
    first = {n.id for n in definition.nodes if n.wait_for.value == "first"}
    problems = []
    for event in rows.events[execution_id]:
        if event["type"] != "step.started":
            continue
        node_id, seq = event["data"]["node_id"], event["seq"]
        done = {u for u in upstream[node_id] if u in ended and ended[u] < seq}
        missing = upstream[node_id] - done
        if (node_id in first and upstream[node_id] and not done) or (
            node_id not in first and missing
        ):
            problems.append(
                f"{execution_id}:{node_id} started (event {seq}) before {sorted(missing)} ended"
            )
    return problems


def _event_sequence(execution: dict[str, Any], rows: Rows) -> list[str]:
    """G11: event ids 1..n without gaps, and the execution's counter agrees."""
    seqs = [e["seq"] for e in rows.events[execution["id"]]]
    if seqs != list(range(1, len(seqs) + 1)) or execution["event_seq"] != len(seqs):
        return [f"{execution['id']}: event ids {seqs} (counter {execution['event_seq']})"]
    return []


def _step_events_once(execution_id: str, rows: Rows) -> list[str]:
    """G2 in the event log: a step attempt starts and succeeds at most once (a transition
    written twice, e.g. retried after a commit whose acknowledgement was lost, repeats it)."""
    seen = Counter(
        (e["type"], e["data"].get("node_id"), e["data"].get("attempt"))
        for e in rows.events[execution_id]
        if e["type"] in ("step.started", "step.succeeded") and isinstance(e["data"], dict)
    )
    return [
        f"{execution_id}:{node} attempt {attempt}: {kind} recorded {k} times"
        for (kind, node, attempt), k in seen.items()
        if k > 1
    ]


def _final_is_final(execution: dict[str, Any], rows: Rows) -> list[str]:
    """G7: a finished execution has one terminal event, its last; no step left open; its
    running-steps counter back at zero."""
    eid = execution["id"]
    terminal = [e for e in rows.events[eid] if e["type"] in TERMINAL_EVENTS]
    if execution["status"] not in TERMINAL:
        return [f"{eid}: {execution['status']} but has {terminal[0]['type']}"] if terminal else []
    problems = []
    if len(terminal) != 1:
        problems.append(f"{eid}: {len(terminal)} terminal events")
    elif rows.events[eid][-1]["seq"] != terminal[0]["seq"]:
        later = [e["type"] for e in rows.events[eid] if e["seq"] > terminal[0]["seq"]]
        problems.append(f"{eid}: events after it finished: {later}")
    elif terminal[0]["type"] != f"execution.{execution['status']}":
        problems.append(f"{eid}: status {execution['status']}, event {terminal[0]['type']}")
    open_steps = [s["node_id"] for s in rows.steps[eid] if s["status"] in ("running", "pending")]
    if open_steps:
        problems.append(f"{eid}: finished with steps still open: {open_steps}")
    if execution["steps_running"] != 0 or execution["finished_at"] is None:
        problems.append(
            f"{eid}: finished with steps_running={execution['steps_running']}, "
            f"finished_at={execution['finished_at']}"
        )
    return problems


def _lease(execution: dict[str, Any], rows: Rows) -> list[str]:
    """G4: only a running execution holds a lease, and a lease held now has not expired
    (else its owner is dead and nobody took it over)."""
    eid = execution["id"]
    if execution["status"] != "running":
        if execution["lease_owner"] is not None:
            return [f"{eid}: {execution['status']} yet leased to {execution['lease_owner']}"]
        return []
    expires = execution["lease_expires_at"]
    if expires is None or _naive(expires) < _naive(rows.now):
        return [f"{eid}: running on an expired lease of {execution['lease_owner']}"]
    return []


def _naive(value: Any) -> Any:
    return value.replace(tzinfo=None) if getattr(value, "tzinfo", None) else value


def _triggers_once(conn: Connection) -> list[str]:
    """G10: a schedule occurrence started at most one execution, a delivery id at most one."""
    problems = []
    fires = conn.execute(
        select(schedule_fires.c.execution_id).where(schedule_fires.c.execution_id.is_not(None))
    ).scalars()
    problems += [
        f"execution {e} started by {k} schedule occurrences"
        for e, k in Counter(fires).items()
        if k > 1
    ]
    by_schedule = Counter(
        conn.execute(
            select(executions.c.trigger_id).where(executions.c.trigger_type == "schedule")
        ).scalars()
    )
    fired = Counter(
        conn.execute(
            select(schedule_fires.c.schedule_id).where(schedule_fires.c.status == "started")
        ).scalars()
    )
    problems += [
        f"schedule {s}: {k} executions for {fired[s]} started occurrences"
        for s, k in by_schedule.items()
        if k != fired[s]
    ]
    deliveries: dict[tuple[str, str], set[str]] = defaultdict(set)
    for webhook_id, delivery_id, execution_id in conn.execute(
        select(
            webhook_deliveries.c.webhook_id,
            webhook_deliveries.c.delivery_id,
            webhook_deliveries.c.execution_id,
        ).where(
            webhook_deliveries.c.delivery_id.is_not(None),
            webhook_deliveries.c.execution_id.is_not(None),
        )
    ):
        deliveries[webhook_id, delivery_id].add(execution_id)
    problems += [
        f"webhook {w} delivery {d} started {len(e)} executions"
        for (w, d), e in deliveries.items()
        if len(e) > 1
    ]
    return problems


def _counters_agree(conn: Connection) -> list[str]:
    """Each workflow's finished counters equal its finished executions (no success later
    counted again as a crash, none lost)."""
    counted = {
        row.id: row
        for row in conn.execute(
            select(
                workflows.c.id,
                workflows.c.executions_succeeded,
                workflows.c.executions_failed,
                workflows.c.executions_cancelled,
                workflows.c.executions_timed_out,
            )
        )
    }
    actual: dict[tuple[str, str], int] = {
        (w, s): n
        for w, s, n in conn.execute(
            select(executions.c.workflow_id, executions.c.status, func.count()).group_by(
                executions.c.workflow_id, executions.c.status
            )
        )
    }
    problems = []
    for workflow_id, row in counted.items():
        for status in TERMINAL:
            want = actual.get((workflow_id, status), 0)
            have = getattr(row, f"executions_{status}")
            if want != have:
                problems.append(f"workflow {workflow_id}: {have} counted {status}, {want} are")
    return problems


class Snapshot:
    """The finished executions at one moment; ``changed`` names those that differ later."""

    COLUMNS = ("status", "result", "error", "finished_at", "event_seq", "steps_succeeded")

    def __init__(self, db: Database) -> None:
        self.db = db
        with db.read() as conn:
            self.rows = {
                r["id"]: tuple(r[c] for c in self.COLUMNS)
                for r in conn.execute(
                    select(executions).where(executions.c.status.in_(TERMINAL))
                ).mappings()
            }

    def changed(self) -> list[str]:
        with self.db.read() as conn:
            now = {
                r["id"]: tuple(r[c] for c in self.COLUMNS)
                for r in conn.execute(
                    select(executions).where(executions.c.id.in_(list(self.rows)))
                ).mappings()
            }
        return [
            f"{eid}: finished as {before} then became {now.get(eid)}"
            for eid, before in self.rows.items()
            if now.get(eid) != before
        ]


class LimitSampler:
    """Samples, every ``interval`` seconds in a thread, the running executions per
    concurrency key, per limited workflow and per limited user, against their limits."""

    def __init__(self, db: Database, interval: float = 0.02) -> None:
        self.db = db
        self.interval = interval
        self.samples = 0
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="limit-sampler", daemon=True)

    def __enter__(self) -> LimitSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        running = executions.c.status == "running"
        groups = {
            "key": (executions.c.concurrency_key, executions.c.key_limit),
            "workflow": (executions.c.workflow_id, executions.c.workflow_limit),
            "user": (executions.c.created_by, executions.c.user_limit),
        }
        while not self._stop.wait(self.interval):
            with self.db.read() as conn:
                for kind, (column, limit) in groups.items():
                    for value, most, n in conn.execute(
                        select(column, func.min(limit), func.count())
                        .where(running, limit.is_not(None), column.is_not(None))
                        .group_by(column)
                    ):
                        if n > most:
                            self.violations.append(f"{kind} {value}: {n} running, limit {most}")
            self.samples += 1
