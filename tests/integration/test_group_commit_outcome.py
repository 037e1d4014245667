"""A group commit (several executions' transitions in one transaction) whose outcome is
unknown, because the connection died during COMMIT, is not written again transition by
transition: it may have committed, and a transition written twice repeats its events and
counters (G2, G12). Each runner gets the error and gives its execution up; whoever resumes
it reads what was committed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from conveyor.app import Conveyor
from conveyor.engine.interfaces import Changes
from conveyor.errors import StoreUnavailable
from conveyor.store import transitions
from conveyor.store.tables import events

WORKFLOW = {"name": "w", "nodes": [{"id": "a", "type": "transform", "config": {"output": 1}}]}


async def test_a_group_commit_with_a_lost_acknowledgement_is_not_written_again(
    conveyor: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    await conveyor.apply(WORKFLOW)
    for n in range(2):
        await conveyor.execute("w", {"n": n})
    claimed = await conveyor.store.claim("w1", lease_seconds=30, limit=2)
    assert len(claimed) == 2
    real = conveyor.store.write
    lost: list[int] = []

    async def committed_then_lost(fn: Any, *args: Any, **kwargs: Any) -> Any:
        # The transaction commits; its acknowledgement never arrives.
        result = await real(fn, *args, **kwargs)
        if fn is transitions.apply_many and not lost:
            lost.append(len(args[1]))
            raise StoreUnavailable("connection lost during COMMIT")
        return result

    real_in_one = conveyor.store._in_one

    async def one_statement_then_lost(pairs: Any) -> Any:
        # The same on PostgreSQL's one-statement path (transitions.apply_in_one).
        result = await real_in_one(pairs)
        if not lost:
            lost.append(len(pairs))
            raise StoreUnavailable("connection lost during COMMIT")
        return result

    monkeypatch.setattr(conveyor.store, "write", committed_then_lost)
    monkeypatch.setattr(conveyor.store, "_in_one", one_statement_then_lost)
    # Both transitions wait for the same commit (the second joins the batch of the first).
    outcomes = await asyncio.gather(
        *(conveyor.store.apply(c, Changes(events=[("test.mark", {})])) for c in claimed),
        return_exceptions=True,
    )
    assert lost == [2], "the two transitions did not share one group commit"
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    with conveyor.store.db.read() as conn:
        marks = dict(
            conn.execute(
                select(events.c.execution_id, func.count())
                .where(events.c.type == "test.mark")
                .group_by(events.c.execution_id)
            ).all()
        )
    assert marks == {c.id: 1 for c in claimed}, "a transition was written twice"
