"""Fixtures for the e2e tier: real ``conveyor worker`` processes on a fresh database (SQLite
or PostgreSQL, from ``database_url`` in tests/conftest.py), a side table in that database
where the plugin nodes of tests/e2e/nodes.py record every call, and polling with deadlines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)

from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.store import Database
from conveyor.store.tables import events, executions, steps
from tests.e2e.crash_support import Servers
from tests.e2e.nodes import CALLS_TABLE, FLAGS_TABLE
from tests.e2e.processes import Workers
from tests.ledger import Ledger

T = TypeVar("T")

side_metadata = MetaData()
calls = Table(
    CALLS_TABLE,
    side_metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("execution_id", String(64), nullable=False),
    Column("node_id", String(100), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("idem_key", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("outcome", String(16)),
)
flags = Table(FLAGS_TABLE, side_metadata, Column("name", String(200), primary_key=True))


@dataclass(frozen=True)
class Call:
    id: int
    execution_id: str
    node_id: str
    attempt: int
    idem_key: str
    pid: int
    started_at: float
    ended_at: float | None
    outcome: str | None


class Side:
    """Reads of the engine's tables and of the side tables, from the test process."""

    def __init__(self, database_url: str) -> None:
        self.db = Database(database_url)
        side_metadata.create_all(self.db.engine)

    def close(self) -> None:
        self.db.dispose()

    def calls(self, execution_id: str | None = None) -> list[Call]:
        query = select(calls).order_by(calls.c.id)
        if execution_id is not None:
            query = query.where(calls.c.execution_id == execution_id)
        with self.db.read() as conn:
            return [Call(**row) for row in conn.execute(query).mappings()]

    def set_flag(self, name: str) -> None:
        with self.db.write() as conn:
            conn.execute(insert(flags), {"name": name})

    def statuses(self, ids: list[str] | None = None) -> dict[str, str]:
        query = select(executions.c.id, executions.c.status)
        if ids is not None:
            query = query.where(executions.c.id.in_(ids))
        with self.db.read() as conn:
            return {row.id: row.status for row in conn.execute(query)}

    def execution(self, execution_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            return dict(
                conn.execute(select(executions).where(executions.c.id == execution_id))
                .mappings()
                .one()
            )

    def steps(self, execution_id: str | None = None) -> list[dict[str, Any]]:
        query = select(steps).order_by(steps.c.id)
        if execution_id is not None:
            query = query.where(steps.c.execution_id == execution_id)
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def events(self, execution_id: str | None = None) -> list[dict[str, Any]]:
        query = select(events).order_by(events.c.execution_id, events.c.seq)
        if execution_id is not None:
            query = query.where(events.c.execution_id == execution_id)
        with self.db.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def held_by(self, pid: int) -> list[str]:
        """Running executions whose lease names the worker process ``pid``."""
        query = select(executions.c.id).where(
            executions.c.status == "running", executions.c.lease_owner.like(f"%:{pid}:%")
        )
        with self.db.read() as conn:
            return list(conn.execute(query).scalars())


async def eventually(
    check: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    *,
    within: float,
    what: str,
    interval: float = 0.02,
    diagnose: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``within``
    seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            extra = f"\n{diagnose()}" if diagnose is not None else ""
            raise AssertionError(f"not within {within:g}s: {what}{extra}")
        await asyncio.sleep(interval)


def epoch(value: datetime) -> float:
    return value.timestamp()


def check_event_sequences(side: Side, execution_ids: list[str]) -> None:
    """G11: each execution's events are numbered 1..n with no gap or duplicate, and the
    counter on the execution row agrees."""
    by_execution: dict[str, list[int]] = {e: [] for e in execution_ids}
    for event in side.events():
        if event["execution_id"] in by_execution:
            by_execution[event["execution_id"]].append(event["seq"])
    with side.db.read() as conn:
        counters = dict(
            conn.execute(
                select(executions.c.id, executions.c.event_seq).where(
                    executions.c.id.in_(execution_ids)
                )
            ).all()
        )
    for execution_id, seqs in by_execution.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"{execution_id}: event seqs {seqs}"
        assert counters[execution_id] == len(seqs), execution_id


@pytest.fixture
def side(database_url: str) -> Iterator[Side]:
    helper = Side(database_url)
    try:
        yield helper
    finally:
        helper.close()


@pytest.fixture
def workers(database_url: str, side: Side, tmp_path: Path) -> Iterator[Workers]:
    """Worker processes on the test database; every one is stopped and reaped afterwards.
    (Depends on ``side`` so the side tables exist before any worker runs a node.)"""
    pool = Workers(database_url, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def servers(database_url: str, side: Side, tmp_path: Path) -> Iterator[Servers]:
    """``conveyor server`` processes (embedded worker and scheduler) that a test may SIGKILL;
    every one is stopped and reaped afterwards."""
    pool = Servers(database_url, tmp_path)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    """The side-effect ledger (tests/ledger.py) on a free loopback port."""
    server = Ledger()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def app(database_url: str, side: Side) -> AsyncIterator[Conveyor]:
    """The commands (apply, execute, cancel, ...) with the e2e node types registered."""
    conveyor = await Conveyor.open(database_url, build_registry(plugins=["tests.e2e.nodes"]))
    try:
        yield conveyor
    finally:
        conveyor.close()


def work(node_id: str, needs: list[str] | None = None, **config: Any) -> dict[str, Any]:
    """A node of type e2e.work."""
    spec: dict[str, Any] = {"id": node_id, "type": "e2e.work", "config": config}
    if needs:
        spec["needs"] = needs
    return spec
