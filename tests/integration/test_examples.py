"""Every workflow in examples/ is applied and executed on SQLite and PostgreSQL, and its
outputs, step rows and side effects are checked (not just its final status)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conveyor.app import Conveyor
from conveyor.engine.definition import load_definition_file
from conveyor.engine.interfaces import SystemClock
from conveyor.store.tables import notifications
from conveyor.worker import Worker
from tests.integration.httpserver import LocalServer
from tests.integration.test_integration_examples import LIBRARY_EXAMPLES

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE_URL = "<base_url>"


@dataclass
class Finished:
    """An example's execution as stored, with what it did outside the engine."""

    returned: str | None
    execution: dict[str, Any]
    events: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    server: LocalServer

    @property
    def id(self) -> str:
        return str(self.execution["id"])

    def rows(self, node_id: str) -> list[dict[str, Any]]:
        return sorted(
            (s for s in self.execution["steps"] if s["node_id"] == node_id),
            key=lambda s: s["attempt"],
        )

    def step(self, node_id: str) -> dict[str, Any]:
        rows = self.rows(node_id)
        assert rows, f"no step row for {node_id}"
        return rows[-1]

    def status_of(self, *node_ids: str) -> list[str]:
        return [self.step(n)["status"] for n in node_ids]

    def event_types(self) -> list[str]:
        return [e["type"] for e in self.events]


@dataclass(frozen=True)
class Case:
    id: str
    example: str
    input: dict[str, Any]
    check: Callable[[Finished], None] = field(repr=False)


def _with_base_url(value: Any, base_url: str) -> Any:
    if isinstance(value, str):
        return value.replace(BASE_URL, base_url)
    if isinstance(value, dict):
        return {k: _with_base_url(v, base_url) for k, v in value.items()}
    return value


async def run_example(app: Conveyor, example: str, input: dict[str, Any], server: LocalServer):
    data = load_definition_file(EXAMPLES / f"{example}.yaml")
    await app.apply(data)
    enqueued = await app.execute(data["name"], input)
    worker = Worker(app.store, app.registry, SystemClock())
    returned = await worker.run_one(enqueued.execution_id)
    execution = await app.store.get_execution(app.workspace_id, enqueued.execution_id)
    events = await app.store.events_after(enqueued.execution_id)
    with app.store.db.read() as conn:
        rows = conn.execute(
            select(notifications).where(notifications.c.execution_id == enqueued.execution_id)
        )
        sent = [dict(r) for r in rows.mappings()]
    return Finished(returned, execution, events, sent, server)


# -- order-followup --------------------------------------------------------------------------


def _order_followup(queue: str, reason: str, note_node: str, note: str, order_id: int):
    def check(run: Finished) -> None:
        execution = run.execution
        assert execution["status"] == "succeeded"
        [sent] = run.notifications
        assert execution["result"] == {
            "summary": {
                "order_id": order_id,
                "queue": queue,
                "note": note,
                "notification_id": sent["id"],
            }
        }
        assert sent["channel"] == "orders"
        assert sent["title"] == f"Order {order_id} followed up"
        assert sent["message"] == f"{queue}: {reason}"
        assert sent["node_id"] == "notify_team"
        review_taken = queue == "account-managers"
        assert run.step("needs_review")["branch"] == str(review_taken).lower()
        assert run.step("review" if review_taken else "standard")["status"] == "succeeded"
        assert run.step("standard" if review_taken else "review")["status"] == "skipped"
        notes = {"note_eu", "note_us", "note_other"}
        assert run.step(note_node)["status"] == "succeeded"
        for other in sorted(notes - {note_node}):
            assert run.step(other)["status"] == "skipped"
            assert run.step(other)["attempt"] == 0
        wait = run.step("cool_off")
        assert wait["status"] == "succeeded"
        waited_until = datetime.fromisoformat(wait["output"]["waited_until"])
        assert waited_until - wait["started_at"] >= timedelta(milliseconds=200)
        assert wait["finished_at"] >= waited_until
        assert "step.waiting" in run.event_types()
        assert execution["steps_total"] == 11
        assert (execution["steps_succeeded"], execution["steps_skipped"]) == (8, 3)

    return check


ORDER_FOLLOWUP = [
    Case(
        "order-followup",
        "order-followup",
        {"order_id": 42},
        _order_followup(
            "account-managers",
            "order 42 is worth 1250",
            "note_eu",
            "Thank you for your order, Ada Lovelace. It ships from Rotterdam.",
            42,
        ),
    ),
    Case(
        "order-followup-small-us",
        "order-followup",
        {"order_id": 7, "amount": 80, "region": "us", "customer": "Grace Hopper"},
        _order_followup(
            "fulfilment",
            "routine order",
            "note_us",
            "Thanks for your order, Grace Hopper! It ships from Denver.",
            7,
        ),
    ),
    Case(
        "order-followup-priority-elsewhere",
        "order-followup",
        {"order_id": 9, "amount": 10, "priority": "high", "region": "apac"},
        _order_followup(
            "account-managers",
            "order 9 is worth 10",
            "note_other",
            "Thank you for your order, Ada Lovelace.",
            9,
        ),
    ),
]


# -- parallel-enrichment ---------------------------------------------------------------------


def _parallel_enrichment(run: Finished) -> None:
    assert run.execution["status"] == "succeeded"
    assert run.execution["result"] == {
        "profile": {
            "email": "ada@analytical.example",
            "company": "Analytical",
            "risk_score": 80,
            "orders": 3,
            "headline": "Analytical (risk 80, 3 orders)",
        }
    }
    branches = [run.step(n) for n in ("company", "risk", "history")]
    contact, profile = run.step("contact"), run.step("profile")
    # The three branches are started together, in the pass after contact finished.
    assert len({b["started_at"] for b in branches}) == 1
    assert branches[0]["started_at"] >= contact["finished_at"]
    assert profile["started_at"] >= max(b["finished_at"] for b in branches)
    assert len(run.rows("profile")) == 1
    assert profile["input"]["output"]["headline"] == "Analytical (risk 80, 3 orders)"


# -- flaky-endpoint-retries ------------------------------------------------------------------


def _flaky_recovers(run: Finished) -> None:
    assert run.execution["status"] == "succeeded"
    assert run.execution["result"] == {
        "rates": {"status": 200, "resource": "exchange-rates", "calls_seen_by_server": 3}
    }
    rows = run.rows("fetch_rates")
    assert [r["status"] for r in rows] == ["failed", "failed", "succeeded"]
    for failed in rows[:2]:
        assert failed["error"]["type"] == "HttpStatusError"
        assert failed["error"]["details"]["status"] == 503
        assert failed["wait_until"] is not None
    first_gap = rows[1]["started_at"] - rows[0]["started_at"]
    second_gap = rows[2]["started_at"] - rows[1]["started_at"]
    assert first_gap >= timedelta(milliseconds=50)
    assert second_gap >= timedelta(milliseconds=100)
    requests = run.server.requests_to("/flaky")
    assert [r.idempotency_key for r in requests] == [f"{run.id}:fetch_rates"] * 3
    assert requests[0].query == {"fail": "2", "resource": "exchange-rates"}
    assert run.execution["usage_api_calls"] == 3


def _flaky_gives_up(run: Finished) -> None:
    assert run.execution["status"] == "failed"
    rows = run.rows("fetch_rates")
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4, 5]
    assert {r["status"] for r in rows} == {"failed"}
    assert rows[-1]["wait_until"] is None
    error = run.execution["error"]
    assert (error["node_id"], error["type"]) == ("fetch_rates", "HttpStatusError")
    assert "answered 503" in error["message"]
    assert len(run.server.requests_to("/flaky")) == 5
    assert run.rows("rates") == []
    assert run.execution["result"] is None


FLAKY = [
    Case(
        "flaky-endpoint-retries",
        "flaky-endpoint-retries",
        {"base_url": BASE_URL, "failures": 2},
        _flaky_recovers,
    ),
    Case(
        "flaky-endpoint-retries-exhausted",
        "flaky-endpoint-retries",
        {"base_url": BASE_URL, "failures": 9},
        _flaky_gives_up,
    ),
]


# -- approval-wait ---------------------------------------------------------------------------


def _approved_after_review(run: Finished) -> None:
    assert run.execution["status"] == "succeeded"
    [sent] = run.notifications
    assert (sent["channel"], sent["title"]) == ("expenses", "Expense of 420 approved")
    assert sent["message"] == "review window closed without objection"
    assert sent["data"] == {"employee": "grace"}
    window = run.step("review_window")
    assert window["status"] == "succeeded"
    assert window["input"] == {"duration": "300ms"}
    waited_until = datetime.fromisoformat(window["output"]["waited_until"])
    assert waited_until - window["started_at"] >= timedelta(milliseconds=300)
    assert window["finished_at"] >= waited_until
    approved = run.step("approved_after_review")
    assert approved["started_at"] >= waited_until
    assert approved["output"]["at"] == window["output"]["waited_until"]
    assert run.status_of("auto_approved") == ["skipped"]
    waiting = [e for e in run.events if e["type"] == "step.waiting"]
    assert [e["data"]["node_id"] for e in waiting] == ["review_window"]
    assert run.execution["result"] == {
        "decision": {
            "employee": "grace",
            "amount": 420,
            "decision": "approved",
            "by": "review window closed without objection",
            "reviewed": True,
            "notification_id": sent["id"],
        }
    }


def _approved_at_once(run: Finished) -> None:
    assert run.execution["status"] == "succeeded"
    [sent] = run.notifications
    assert (sent["title"], sent["message"]) == ("Expense of 40 approved", "under the limit")
    assert run.status_of("review_window", "approved_after_review") == ["skipped", "skipped"]
    assert "step.waiting" not in run.event_types()
    assert run.execution["result"] == {
        "decision": {
            "employee": "grace",
            "amount": 40,
            "decision": "approved",
            "by": "under the limit",
            "reviewed": False,
            "notification_id": sent["id"],
        }
    }


APPROVAL = [
    Case(
        "approval-wait",
        "approval-wait",
        {"employee": "grace", "amount": 420, "limit": 100, "review_window": "300ms"},
        _approved_after_review,
    ),
    Case(
        "approval-wait-under-limit",
        "approval-wait",
        {"employee": "grace", "amount": 40, "limit": 100},
        _approved_at_once,
    ),
]


# -- error-continue --------------------------------------------------------------------------


def _falls_back(run: Finished) -> None:
    assert run.execution["status"] == "succeeded"
    assert run.execution["result"] == {
        "offer": {
            "customer": "ada",
            "tier": "standard",
            "discount_percent": 5,
            "degraded": True,
            "note": "NodeTimeout: step timed out after 0.25s",
        }
    }
    rows = run.rows("loyalty")
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert [r["continued"] for r in rows] == [False, True]
    final = rows[-1]
    assert final["output"] == {"error": final["error"]}
    assert final["error"]["type"] == "NodeTimeout"
    for row in rows:
        assert row["finished_at"] - row["started_at"] < timedelta(seconds=5)
    # Two attempts (the rows above); a loaded machine may time an attempt out before its
    # request reaches the server, so the server saw one or two.
    calls = run.server.requests_to("/slow")
    assert [c.query for c in calls] in ([{"customer": "ada"}], [{"customer": "ada"}] * 2)
    assert run.step("loyalty_failed")["branch"] == "true"
    assert run.status_of("loyalty_tier") == ["skipped"]
    assert run.execution["error"] is None
    assert (run.execution["steps_failed"], run.execution["steps_skipped"]) == (1, 1)


# -- branching-router ------------------------------------------------------------------------


def _routed(team: str, case: str, sla: int, channel: str, taken: str):
    branches = {"billing_team", "engineering", "incident", "triage"}

    def check(run: Finished) -> None:
        assert run.execution["status"] == "succeeded"
        assignment = run.step("assignment")["output"]
        assert assignment["team"] == team
        assert assignment["category"] == case
        assert assignment["sla_hours"] == sla
        assert assignment["page_on_call"] is (channel == "pager")
        assert run.step("category")["branch"] == case
        assert run.status_of(taken) == ["succeeded"]
        assert set(run.status_of(*sorted(branches - {taken}))) == {"skipped"}
        [sent] = run.notifications
        assert (sent["channel"], sent["title"]) == (channel, f"T-1 -> {team}")
        assert run.execution["result"] == {
            "routed": {
                "ticket": "T-1",
                "category": case,
                "team": team,
                "sla_hours": sla,
                "page_on_call": channel == "pager",
                "channel": channel,
                "notification_id": sent["id"],
            }
        }

    return check


def _ticket(category: str) -> dict[str, Any]:
    return {"ticket": {"id": "T-1", "category": category, "subject": "Help"}}


ROUTER = [
    Case(
        "branching-router",
        "branching-router",
        _ticket("billing"),
        _routed("billing", "billing", 24, "support", "billing_team"),
    ),
    Case(
        "branching-router-outage",
        "branching-router",
        _ticket("Outage"),
        _routed("sre", "outage", 1, "pager", "incident"),
    ),
    Case(
        "branching-router-default",
        "branching-router",
        _ticket("feature-request"),
        _routed("triage", "default", 48, "support", "triage"),
    ),
]

# -- order-digest ----------------------------------------------------------------------------

DIGEST_ORDERS = [
    {"id": 1, "customer": "ada", "amount": "12.50", "status": "paid"},
    {"id": 2, "customer": "bob", "amount": "99", "status": "refunded"},
    {"id": 3, "customer": "ada", "amount": 7.5, "status": "paid"},
    {"id": 4, "customer": "cy", "amount": "3", "status": "paid"},
    {"id": 5, "customer": "cy", "status": "paid"},
]
DIGEST_CUSTOMERS = [
    {"customer": "ada", "name": "Ada"},
    {"customer": "bob", "name": "Bob"},
    {"customer": "cy", "name": "Cy"},
]


def _digested(run: Finished) -> None:
    execution = run.execution
    assert execution["status"] == "succeeded"
    assert run.step("paid")["output"]["dropped_count"] == 2
    assert run.step("nothing_paid")["status"] == "skipped"
    assert run.step("amounts")["output"]["results"] == [
        {"customer": "ada", "amount": 12.5},
        {"customer": "ada", "amount": 7.5},
        {"customer": "cy", "amount": 3},
    ]
    assert execution["result"] == {
        "digest": {
            "items": [
                {"customer": "ada", "name": "Ada", "orders": 2, "total": 20.0},
                {"customer": "cy", "name": "Cy", "orders": 1, "total": 3},
            ],
            "count": 2,
        }
    }


def _nothing_paid(run: Finished) -> None:
    execution = run.execution
    assert execution["status"] == "succeeded"
    assert run.status_of("amounts", "per_customer", "digest") == ["skipped"] * 3
    assert execution["result"]["nothing_paid"] == {
        "status": "succeeded",
        "message": "no paid orders among 1",
    }


ORDER_DIGEST = [
    Case(
        "order-digest",
        "order-digest",
        {"orders": DIGEST_ORDERS, "customers": DIGEST_CUSTOMERS},
        _digested,
    ),
    Case(
        "order-digest-nothing-paid",
        "order-digest",
        {"orders": [DIGEST_ORDERS[1]], "customers": DIGEST_CUSTOMERS},
        _nothing_paid,
    ),
]

CASES = [
    *ORDER_DIGEST,
    *ORDER_FOLLOWUP,
    Case(
        "parallel-enrichment",
        "parallel-enrichment",
        {"email": "Ada@Analytical.example", "previous_orders": [101, 102, 103]},
        _parallel_enrichment,
    ),
    *FLAKY,
    *APPROVAL,
    Case(
        "error-continue",
        "error-continue",
        {"customer": "ada", "loyalty_url": f"{BASE_URL}/slow"},
        _falls_back,
    ),
    *ROUTER,
]


def test_every_example_has_a_case_and_a_description() -> None:
    files = sorted(EXAMPLES.glob("*.yaml")) + sorted(EXAMPLES.glob("*.json"))
    assert len(files) >= 6
    assert {f.stem for f in files} == {c.example for c in CASES} | LIBRARY_EXAMPLES
    for file in files:
        data = load_definition_file(file)
        assert data["name"] == file.stem
        assert len(data.get("description", "")) > 40, file.name


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_example_runs(case: Case, conveyor: Conveyor, http_server: LocalServer) -> None:
    run = await run_example(
        conveyor, case.example, _with_base_url(case.input, http_server.base_url), http_server
    )
    assert run.returned == run.execution["status"]
    assert run.execution["steps_running"] == 0
    assert [e["seq"] for e in run.events] == list(range(1, len(run.events) + 1))
    assert run.events[-1]["type"] == f"execution.{run.execution['status']}"
    if run.execution["status"] == "succeeded":
        # The result shows what the workflow decided, not only which notification it sent.
        [(_node, shown)] = run.execution["result"].items()
        assert set(shown) - {"notification_id", "channel"}, shown
    case.check(run)


# -- the commands an example's header documents -----------------------------------------------


def _documented_commands(example: str) -> list[list[str]]:
    """The indented ``#   python ...`` and ``#   conveyor ...`` lines of an example's header."""
    lines = (EXAMPLES / f"{example}.yaml").read_text().splitlines()
    commands = [line.removeprefix("#").strip() for line in lines if line.startswith("#   ")]
    return [shlex.split(c) for c in commands if c.split()[0] in ("python", "conveyor")]


def test_the_flaky_example_runs_as_its_header_says(database_url: str) -> None:
    [server_command, run_command] = _documented_commands("flaky-endpoint-retries")
    assert server_command == ["python", "examples/flaky_server.py"]
    assert "--allow-private-network" in run_command
    env = {"CONVEYOR_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    root = EXAMPLES.parent
    # The one change to the documented commands: a free port instead of 8000, which
    # something else on a shared machine may hold.
    with subprocess.Popen(
        [sys.executable, *server_command[1:], "--port", "0"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as server:
        assert server.stdout is not None
        try:
            ready = server.stdout.readline()
            address = re.match(r"serving http://(\S+)/flaky", ready)
            assert address, ready
            run = [arg.replace("127.0.0.1:8000", address.group(1)) for arg in run_command]
            done = subprocess.run(
                [str(Path(sys.executable).parent / "conveyor"), *run[1:]],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            server.terminate()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "rates": {"status": 200, "resource": "exchange-rates", "calls_seen_by_server": 3}
    }
