"""The examples that use the node library end to end (a database, an LLM, email, chat and
tasks), each run on SQLite and PostgreSQL against real local servers: a SQLite warehouse
file, the scripted OpenAI-compatible server, aiosmtpd, a chat webhook receiver."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from conveyor.app import Conveyor
from conveyor.engine.definition import load_definition_file
from conveyor.engine.interfaces import SystemClock
from conveyor.worker import Worker
from tests.integration.llmserver import LLMServer, Reply
from tests.integration.mailserver import mail_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Run here with other servers than tests/integration/test_examples.py's.
LIBRARY_EXAMPLES = frozenset({"nightly-report"})


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
