"""G12: a write whose outcome the worker cannot know. A worker gives up an execution when a
write fails (the database refused it, or the connection died during COMMIT, so the commit
may or may not have happened); a worker that can write must then resume it from what was
committed, and nothing committed may be done again.

- A write that fails outright (the ``commit.before`` failpoint raising), on both databases.
- On PostgreSQL, commits whose acknowledgement is lost: a TCP proxy between the worker and
  the database (tests/e2e/commit_cutter.py) lets COMMITs through and then cuts the
  connection before their answer comes back, so they did commit. The invariant checker and
  the side-effect ledger judge the outcome: nothing lost, no step succeeded twice, no call
  after a step's success was committed, events without gaps or duplicates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from conveyor.app import Conveyor
from tests.e2e.commit_cutter import CommitCutter
from tests.e2e.conftest import Side, eventually
from tests.e2e.processes import Workers
from tests.invariants import check
from tests.ledger import Ledger

PRIVATE = {"CONVEYOR_ALLOW_PRIVATE_NETWORK": "true"}
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
NODES = ["a", "b", "c", "d"]


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    server = Ledger()
    try:
        yield server
    finally:
        server.close()


def definition(ledger: Ledger) -> dict[str, Any]:
    return {
        "name": "commits",
        "settings": {"retry": {"max_attempts": 5, "initial_interval": "100ms"}},
        "nodes": [
            ledger.node("a", 0.05),
            # Uneven: the transition recording b's success starts nothing (d waits for c),
            # so written twice it would insert no row twice and only the events tell.
            ledger.node("b", 0.05, needs=["a"]),
            ledger.node("c", 0.3, needs=["a"]),
            ledger.node("d", 0.05, needs=["b", "c"]),
        ],
    }


async def _all_end(side: Side, ids: list[str], workers: Workers, within: float) -> None:
    await eventually(
        lambda: all(s in TERMINAL for s in side.statuses(ids).values()),
        within=within,
        what="every execution ends",
        interval=0.05,
        diagnose=workers.logs,
    )


@pytest.mark.timeout(90)
async def test_an_execution_given_up_after_a_failed_write_is_resumed_not_held(
    app: Conveyor, side: Side, workers: Workers, ledger: Ledger
) -> None:
    """Regression: the worker that gave the execution up went on renewing its lease (the
    heartbeat renewed every lease the worker's name held), so it stayed ``running`` for as
    long as that worker lived and nobody resumed it."""
    await app.apply(definition(ledger))
    execution_id = (await app.execute("commits", {})).execution_id
    # The third commit (claim and the first step's start are the first two) fails.
    workers.start(concurrency=2, CONVEYOR_TEST_FAILPOINTS="commit.before=raise@3", **PRIVATE)
    await _all_end(side, [execution_id], workers, within=30)
    assert any("abandoning" in w.log_text() for w in workers.started), workers.logs()
    assert side.statuses([execution_id]) == {execution_id: "succeeded"}
    assert check(side.db) == []
    assert ledger.violations(side.db, [execution_id], NODES, set()) == []


@pytest.mark.postgres
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_commits_whose_acknowledgement_is_lost_duplicate_nothing_and_lose_nothing(
    backend: str,
    database_url: str,
    app: Conveyor,
    side: Side,
    workers: Workers,
    ledger: Ledger,
) -> None:
    target = make_url(database_url)
    cutter = CommitCutter(target.port or 5432, every=5, cuts=8)
    try:
        await app.apply(definition(ledger))
        ids = [(await app.execute("commits", {"n": i})).execution_id for i in range(12)]
        proxied = target.set(port=cutter.port).render_as_string(hide_password=False)
        worker = workers.start(concurrency=8, CONVEYOR_DATABASE_URL=proxied, **PRIVATE)
        await _all_end(side, ids, workers, within=90)
        log = worker.log_text()
        print(
            f"\n{cutter.commits} commits seen, {cutter.cut} acknowledgements withheld "
            f"({cutter.cut_groups} of group commits); the "
            f"worker gave up {log.count('abandoning')} executions, failed "
            f"{log.count('claim failed')} claims and {log.count('heartbeat failed')} renewals"
        )
        assert cutter.cut == cutter.cuts, "fewer commits were cut than planned"
        assert cutter.cut_groups > 0, "no group commit was cut: the scenario missed its aim"
        assert set(side.statuses(ids).values()) == {"succeeded"}, workers.logs()
        assert check(side.db) == []
        assert ledger.violations(side.db, ids, NODES, set()) == []
        assert worker.alive
    finally:
        await asyncio.to_thread(cutter.close)
