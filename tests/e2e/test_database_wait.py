"""A worker started before its database answers waits for it (``--wait-for-database``,
default 60 s), then works; what waiting cannot fix (a SQLite file in a folder that does not
exist, or no wait asked for) fails at once with exit code 2 and one line saying why."""

from __future__ import annotations

import asyncio
import socket

import pytest
from sqlalchemy.engine import make_url

from conveyor.app import Conveyor
from tests.e2e.commit_cutter import CommitCutter
from tests.e2e.conftest import Side, eventually
from tests.e2e.processes import Workers

FLOW = {"name": "late", "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}]}


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.postgres
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_worker_started_before_postgresql_answers_waits_for_it_then_works(
    backend: str, database_url: str, app: Conveyor, side: Side, workers: Workers
) -> None:
    target = make_url(database_url)
    port = _unused_port()  # nothing listens here until the proxy below starts
    late = target.set(port=port).render_as_string(hide_password=False)
    worker = workers.start(concurrency=2, CONVEYOR_DATABASE_URL=late)
    await eventually(
        lambda: worker.log_text().count("trying again") >= 2,
        within=60,
        what="the worker says twice that it waits for the database",
        diagnose=workers.logs,
    )
    assert worker.alive, worker.log_text()
    assert "Connection refused" in worker.log_text()
    proxy = CommitCutter(target.port or 5432, every=1, cuts=0, port=port)
    try:
        await app.apply(FLOW)
        ids = [(await app.execute("late", {})).execution_id for _ in range(3)]
        await eventually(
            lambda: set(side.statuses(ids).values()) == {"succeeded"},
            within=60,
            what="the waiting worker runs what was queued once the database answers",
            diagnose=workers.logs,
        )
        assert "started: database" in worker.log_text()
    finally:
        await asyncio.to_thread(proxy.close)


@pytest.mark.timeout(60)
async def test_what_waiting_cannot_fix_fails_at_once(
    backend: str, database_url: str, workers: Workers
) -> None:
    if backend == "sqlite":
        folder = make_url(database_url).database or ""
        wrong = f"sqlite:///{folder}-missing/nested/conveyor.db"
        env = {"CONVEYOR_DATABASE_URL": wrong}  # the default wait: 60 s
        says = "does not exist"
    else:
        gone = make_url(database_url).set(port=_unused_port())
        env = {
            "CONVEYOR_DATABASE_URL": gone.render_as_string(hide_password=False),
            "CONVEYOR_WAIT_FOR_DATABASE": "0",
        }
        says = "cannot reach the database"
    worker = workers.start(**env)
    assert await asyncio.to_thread(worker.wait, 30) == 2, worker.log_text()
    assert says in worker.log_text() and "trying again" not in worker.log_text()
