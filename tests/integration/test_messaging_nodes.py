"""``email.send`` and ``chat.post`` in workflows run by the app, on SQLite and PostgreSQL, with
stored credentials: retries keep one Message-ID, a 429 waits as long as it asks, and no
secret reaches the database."""

from __future__ import annotations

import base64
import hashlib

from conveyor.app import Conveyor
from tests.integration.chatserver import ChatServer, Reply
from tests.integration.mailserver import PASSWORD, mail_server
from tests.integration.test_credentials import leaks
from tests.integration.test_runner import execute, workflow

HOOK = "/services/T0001/B0002/e2esecret0123456789"


async def test_email_retried_after_a_temporary_refusal_keeps_its_message_id(
    conveyor: Conveyor,
) -> None:
    async with mail_server("none", fail_data=1) as server:
        await conveyor.set_credential("mailer", "smtp", server.credential())
        finished = await execute(
            conveyor,
            workflow(
                "mail-report",
                {
                    "id": "report",
                    "type": "transform",
                    "config": {
                        "output": {
                            "csv": "id,total\n{{ input.id }},{{ input.total }}\n",
                            "file": {
                                "content_type": "application/pdf",
                                "base64": base64.b64encode(b"%PDF-1.7").decode(),
                            },
                        }
                    },
                },
                {
                    "id": "mail",
                    "type": "email.send",
                    "needs": ["report"],
                    "retry": {"max_attempts": 3, "initial_interval": "10ms"},
                    "config": {
                        "credential": "mailer",
                        "to": "{{ input.email }}",
                        "subject": "Order {{ input.id }}",
                        "text": "Total: {{ input.total }}",
                        "html": "<p>Total: <b>{{ input.total }}</b></p>",
                        "attachments": [
                            {"filename": "order.csv", "content": "{{ nodes.report.output.csv }}"},
                            {"filename": "order.pdf", "file": "{{ nodes.report.output.file }}"},
                        ],
                    },
                },
            ),
            {"id": 7, "total": "12.50", "email": "ann@example.com"},
        )
    assert finished.status == "succeeded", finished.execution
    assert [row["attempt"] for row in finished.rows("mail")] == [1, 2]
    digest = hashlib.sha256(f"{finished.id}:mail".encode()).hexdigest()[:32]
    message_id = f"<{digest}@conveyor.test>"
    assert [r.message["Message-ID"] for r in server.received] == [message_id, message_id]
    output = finished.step("mail")["output"]
    assert output["message_id"] == message_id
    assert output["accepted"] == ["ann@example.com"]
    got = server.received[-1].message
    assert got["Subject"] == "Order 7"
    files = {a.get_filename(): a.get_content() for a in got.iter_attachments()}
    assert files == {"order.csv": "id,total\n7,12.50\n", "order.pdf": b"%PDF-1.7"}
    assert leaks(conveyor, PASSWORD) == []


async def test_chat_post_waits_out_a_429_then_posts(
    conveyor: Conveyor, chat_server: ChatServer
) -> None:
    url = chat_server.base_url + HOOK
    chat_server.script(HOOK, Reply(429, "rate_limited", {"Retry-After": "1"}), Reply(200, "ok"))
    await conveyor.set_credential("team-slack", "bearer", {"token": url})
    finished = await execute(
        conveyor,
        workflow(
            "announce",
            {
                "id": "announce",
                "type": "chat.post",
                "retry": {"max_attempts": 3, "initial_interval": "10ms"},
                "config": {
                    "service": "slack",
                    "credential": "team-slack",
                    "title": "Deploy",
                    "text": "{{ input.service }} is live",
                },
            },
        ),
        {"service": "billing"},
    )
    assert finished.status == "succeeded", finished.execution
    assert [e["delay_seconds"] for e in finished.events_of("step.retrying")] == [1.0]
    posted = chat_server.posted(HOOK)
    assert [p.json for p in posted] == [{"text": "*Deploy*\nbilling is live"}] * 2
    assert finished.step("announce")["output"] == {
        "service": "slack",
        "status": 200,
        "message_id": None,
    }
    assert leaks(conveyor, "e2esecret") == []
