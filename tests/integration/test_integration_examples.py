"""The examples that use the node library end to end (a database, an LLM, email, chat and
tasks), each run on SQLite and PostgreSQL against real local servers: a SQLite warehouse
file, the scripted OpenAI-compatible server, aiosmtpd, a chat webhook receiver."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

from conveyor.app import Conveyor
from conveyor.engine.definition import load_definition_file
from conveyor.engine.interfaces import SystemClock
from conveyor.store import inbox
from conveyor.worker import Worker
from tests.integration.chatserver import ChatServer
from tests.integration.llmserver import LLMServer, Reply
from tests.integration.mailserver import mail_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Run here with other servers than tests/integration/test_examples.py's.
LIBRARY_EXAMPLES = frozenset({"nightly-report", "support-triage"})


async def run(app: Conveyor, example: str, input: dict[str, Any]) -> dict[str, Any]:
    data = load_definition_file(EXAMPLES / f"{example}.yaml")
    await app.apply(data)
    enqueued = await app.execute(data["name"], input)
    worker = Worker(app.store, app.registry, SystemClock())
    await asyncio.wait_for(worker.run_one(enqueued.execution_id), timeout=60)
    return await app.store.get_execution(app.workspace_id, enqueued.execution_id)


def step(execution: dict[str, Any], node_id: str) -> dict[str, Any]:
    return max(
        (s for s in execution["steps"] if s["node_id"] == node_id), key=lambda s: s["attempt"]
    )


def warehouse(folder: Path) -> Path:
    path = folder / "warehouse.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, day TEXT, region TEXT, amount REAL)"
        )
        db.executemany(
            "INSERT INTO orders (day, region, amount) VALUES (?, ?, ?)",
            [
                ("2026-12-02", "eu", 120.0),
                ("2026-12-02", "eu", 80.5),
                ("2026-12-02", "us", 300.0),
                ("2026-12-01", "us", 999.0),  # another day: not in the report
            ],
        )
    return path


async def test_nightly_report(conveyor: Conveyor, llm_server: LLMServer, tmp_path: Path) -> None:
    summary = "Three orders for 500.50 in total; the US led with 300."
    llm_server.script(Reply(text=summary, input_tokens=40, output_tokens=12))
    async with mail_server("none") as mail:
        await conveyor.set_credential(
            "warehouse", "database", {"url": f"sqlite:///{warehouse(tmp_path)}"}
        )
        await conveyor.set_credential(
            "llm", "llm", {"api_key": "sk-test-nightly-report", "base_url": llm_server.base_url}
        )
        await conveyor.set_credential("mail", "smtp", mail.credential())
        execution = await run(
            conveyor, "nightly-report", {"day": "2026-12-02", "to": "sales@example.com"}
        )
        assert execution["status"] == "succeeded", execution["error"]
        # The query's rows, bound by parameter, reached the model...
        assert step(execution, "orders")["output"]["rows"] == [
            {"region": "us", "orders": 1, "revenue": 300.0},
            {"region": "eu", "orders": 2, "revenue": 200.5},
        ]
        (asked,) = llm_server.requests
        prompt = asked.messages[-1]["content"]
        assert '"region": "us"' in prompt and '"revenue": 200.5' in prompt
        assert asked.header("Authorization") == "Bearer sk-test-nightly-report"
        # ... and its summary, with the figures as CSV, reached the mailbox.
        (received,) = mail.received
        message = received.message
        assert received.rcpt_tos == ["sales@example.com"]
        assert message["Subject"] == "Orders report: 3 orders, 2 regions"
        body = message.get_body(("plain",))
        assert body is not None and body.get_content().strip() == summary
        (attachment,) = list(message.iter_attachments())
        assert attachment.get_filename() == "orders.csv"
        assert attachment.get_content() == "region,orders,revenue\nus,1,300.0\neu,2,200.5\n"
        assert execution["result"] == {
            "report": {
                "regions": 2,
                "message_id": message["Message-ID"],
                "tokens": 52,
            }
        }
        # One call each: the query, the completion, the send.
    assert execution["usage_tokens"] == 52 and execution["usage_api_calls"] == 3


REQUESTS = {
    "urgent": {
        "from": "ops@shop.example",
        "subject": "Checkout is down",
        "body": "Every payment fails with error 500 since 09:12. We are losing orders.",
    },
    "routine": {
        "from": "ada@example.com",
        "subject": "Invoice address",
        "body": "Could you change the address on invoice 1042?",
    },
}


async def test_support_triage(
    conveyor: Conveyor, llm_server: LLMServer, chat_server: ChatServer
) -> None:
    await conveyor.set_credential(
        "llm", "llm", {"api_key": "sk-test-support-triage", "base_url": llm_server.base_url}
    )
    await conveyor.set_credential(
        "support-chat", "bearer", {"token": f"{chat_server.base_url}/services/T0/B0/hook"}
    )
    llm_server.script(
        # A first answer that breaks the schema is sent back once with the error.
        Reply(text='{"category": "outage", "urgency": "urgent", "summary": "Checkout down"}'),
        Reply(text='{"category": "bug", "urgency": "urgent", "summary": "Checkout fails: 500s"}'),
        Reply(text='{"category": "billing", "urgency": "low", "summary": "New invoice address"}'),
    )
    urgent = await run(conveyor, "support-triage", REQUESTS["urgent"])
    routine = await run(conveyor, "support-triage", REQUESTS["routine"])
    assert urgent["status"] == routine["status"] == "succeeded", (urgent["error"], routine["error"])
    assert urgent["result"]["triaged"] | {"task_id": None} == {
        "category": "bug",
        "urgency": "urgent",
        "task_id": None,
        "assignee": "engineering@example.com",
        "alerted": True,
    }
    assert routine["result"]["triaged"]["assignee"] == "billing@example.com"
    assert routine["result"]["triaged"]["alerted"] is False
    assert step(routine, "alert")["status"] == "skipped"
    # The repair: the schema's error went back to the model in the second request.
    repair = llm_server.requests[1].messages
    assert "outage" in str(repair) and "is not one of" in str(repair)
    # Only the urgent request reached the chat, in Slack's format.
    (posted,) = chat_server.posted()
    assert posted.path == "/services/T0/B0/hook"
    assert "ops@shop.example: Checkout fails: 500s" in str(posted.json)
    # Each request is a task in the right queue; the urgent one due in four hours.
    made = await conveyor.store.read(inbox.list_tasks, conveyor.workspace_id)
    tasks = {t["title"]: t for t in made}
    assert set(tasks) == {"[urgent] Checkout fails: 500s", "[low] New invoice address"}
    soon = tasks["[urgent] Checkout fails: 500s"]
    assert abs(soon["due_at"] - soon["created_at"] - timedelta(hours=4)) < timedelta(seconds=5)
    later = tasks["[low] New invoice address"]
    assert abs(later["due_at"] - later["created_at"] - timedelta(days=2)) < timedelta(seconds=5)
    assert soon["execution_id"] == urgent["id"]
