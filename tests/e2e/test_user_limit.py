"""The workspace's per-user running limit holds across worker processes: a user with 12
queued executions never has more than N running at once (sampled from the database while
they run), and another user's executions are not held back meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict

import pytest
from sqlalchemy import func, select

from conveyor.app import Conveyor
from conveyor.engine.interfaces import ExecutionUser
from conveyor.store import accounts
from conveyor.store.tables import executions
from tests.e2e.conftest import Call, Side, eventually, work
from tests.e2e.processes import REPO, Workers
from tests.e2e.test_flow_control import max_overlap

CLI = [sys.executable, "-c", "from conveyor.cli.main import main; main()"]
LIMIT = 3
SLOW = {"name": "slow", "nodes": [work("hold", sleep=2.0)]}
FAST = {"name": "fast", "nodes": [work("quick", sleep=0.05)]}


def set_limit(database_url: str, limit: int) -> None:
    """Through the command line, as an operator would."""
    done = subprocess.run(
        [*CLI, "workspaces", "set", "--max-running-per-user", str(limit)],
        cwd=REPO,
        env={**os.environ, "CONVEYOR_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"at most {limit} running executions per user" in done.stdout


def running_per_user(side: Side) -> Counter[str]:
    with side.db.read() as conn:
        rows = conn.execute(
            select(executions.c.created_by, func.count())
            .where(executions.c.status == "running")
            .group_by(executions.c.created_by)
        ).all()
    return Counter({r[0]: r[1] for r in rows})


async def user(app: Conveyor, email: str) -> ExecutionUser:
    now = app.store.clock.now()
    user_id = await app.store.write(accounts.create_user, email, "a long password", now)
    return ExecutionUser(user_id, email)


@pytest.mark.timeout(120)
async def test_a_user_never_has_more_than_the_limit_running_and_others_are_not_blocked(
    app: Conveyor, side: Side, workers: Workers, database_url: str
) -> None:
    set_limit(database_url, LIMIT)
    ann, bob = await user(app, "ann@example.com"), await user(app, "bob@example.com")
    await app.apply(SLOW)
    await app.apply(FAST)
    # Two slots each: Ann's LIMIT running executions need both processes.
    pair = [workers.start(concurrency=2), workers.start(concurrency=2)]
    for worker in pair:
        await eventually(worker.connected, within=20, what=f"worker {worker.pid} connects")
    anns = [(await app.execute("slow", {}, user=ann)).execution_id for _ in range(12)]
    bobs = [(await app.execute("fast", {}, user=bob)).execution_id for _ in range(4)]

    samples: list[Counter[str]] = []
    ann_done_when_bob_done: list[int] = []

    def all_finished() -> bool:
        samples.append(running_per_user(side))
        statuses = side.statuses(anns + bobs)
        ann_done = sum(statuses[i] == "succeeded" for i in anns)
        if not ann_done_when_bob_done and all(statuses[i] == "succeeded" for i in bobs):
            ann_done_when_bob_done.append(ann_done)
        return ann_done == len(anns) and bool(ann_done_when_bob_done)

    await eventually(
        all_finished,
        within=90,
        what="every execution succeeds",
        diagnose=lambda: f"{side.statuses(anns + bobs)}\n{workers.logs()}",
    )
    most = max(s[ann.id] for s in samples)
    assert most <= LIMIT, f"ann had {most} running at once (limit {LIMIT})"
    # Not trivially serial: the limit was reached, in both processes together.
    assert most == LIMIT, most
    # Bob's executions ran while Ann's queue was still long (at most two of her rounds of
    # LIMIT had finished; her 12 take four).
    assert ann_done_when_bob_done[0] <= 2 * LIMIT, ann_done_when_bob_done
    # The nodes' own record agrees: never more than LIMIT of Ann's calls overlapped.
    by_execution: dict[str, list[Call]] = defaultdict(list)
    for call in side.calls():
        by_execution[call.execution_id].append(call)
    spans = [
        (min(c.started_at for c in by_execution[i]), max(c.ended_at or 0 for c in by_execution[i]))
        for i in anns
    ]
    assert max_overlap(spans) <= LIMIT
    assert {c.pid for c in side.calls()} == {w.pid for w in pair}
