"""A canary secret sent through every built-in node type that can carry data, on both
databases: the real value reaches the outside services (HTTP, SMTP, chat, LLM, SQLite, the
code sandbox), and is found nowhere Conveyor keeps or shows anything: not in any table, not
in the API's answers (execution, steps, events, lists), not on the live stream, not in the
process's log lines."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from conveyor.redaction import install_log_filter
from conveyor.store.tables import metadata
from tests.api.conftest import Api
from tests.api.support import SSEStream
from tests.integration.chatserver import ChatServer, chat_server
from tests.integration.httpserver import LocalServer, http_server
from tests.integration.llmserver import LLMRequest, LLMServer, Reply, ToolCall, llm_server
from tests.integration.mailserver import mail_server
from tests.support import bubblewrap_works

__all__ = ["chat_server", "http_server", "llm_server"]  # fixtures used here
CANARY = "canary-9f2e61c4d7b3a58e"


def everything_stored(api: Api) -> str:
    parts = []
    with api.store.db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            parts += [f"{table.name}: {tuple(r)!r}" for r in conn.execute(select(table)).all()]
    return "\n".join(parts)


def definition(base: dict[str, str]) -> dict[str, Any]:
    secret = "{{ secrets.canary }}"
    carry = f"carried {secret} along"
    items = [{"id": 1, "note": carry}, {"id": 2, "note": secret}]
    nodes: list[dict[str, Any]] = [
        {"id": "start", "type": "transform", "config": {"output": {"said": carry}}},
        {
            "id": "http",
            "type": "http.request",
            "needs": ["start"],
            "config": {"url": f"{base['http']}/echo", "headers": {"X-Token": secret}},
        },
        {
            "id": "setting",
            "type": "set",
            "needs": ["start"],
            "config": {"fields": [{"name": "token", "value": secret}]},
        },
        {
            "id": "filtering",
            "type": "filter",
            "needs": ["start"],
            "config": {"items": items, "conditions": [{"field": "id", "op": "gte", "value": 1}]},
        },
        {
            "id": "splitting",
            "type": "split",
            "needs": ["start"],
            "config": {"from": {"items": items}, "field": "items"},
        },
        {
            "id": "aggregating",
            "type": "aggregate",
            "needs": ["start"],
            "config": {"items": items, "group_by": "note", "metrics": [{"op": "count"}]},
        },
        {
            "id": "merging",
            "type": "merge",
            "needs": ["setting", "filtering"],
            "config": {
                "inputs": ["{{ nodes.filtering.output.kept }}", [{"extra": secret}]],
                "mode": "append",
            },
        },
        {
            "id": "each",
            "type": "foreach",
            "needs": ["start"],
            "config": {
                "items": items,
                "node": {"type": "transform", "config": {"output": "{{ item.note }}!"}},
            },
        },
        {
            "id": "query",
            "type": "db.query",
            "needs": ["start"],
            "config": {
                "credential": "warehouse",
                "sql": "SELECT :s AS echoed",
                "params": {"s": secret},
            },
        },
        {
            "id": "mail",
            "type": "email.send",
            "needs": ["start"],
            "config": {
                "credential": "mail",
                "to": "ops@example.com",
                "subject": carry,
                "text": carry,
            },
        },
        {
            "id": "chat",
            "type": "chat.post",
            "needs": ["start"],
            "config": {"service": "slack", "credential": "hook", "text": carry},
        },
        {
            "id": "ask",
            "type": "llm.chat",
            "needs": ["start"],
            "config": {"credential": "llm", "model": "echo", "prompt": carry},
        },
        {
            "id": "agent",
            "type": "llm.agent",
            "needs": ["start"],
            "config": {
                "credential": "llm",
                "model": "echo",
                "prompt": carry,
                "tools": [{"name": "echo", "http": {"url": f"{base['http']}/echo"}}],
            },
        },
        {
            "id": "task",
            "type": "task.create",
            "needs": ["start"],
            "config": {"title": carry, "body": carry},
        },
        {
            "id": "note",
            "type": "notify",
            "needs": ["start"],
            "config": {"title": carry, "message": carry, "data": {"s": secret}},
        },
        {
            "id": "child",
            "type": "workflow.call",
            "needs": ["start"],
            "config": {"workflow": "canary-child", "input": {"s": secret}},
        },
    ]
    if bubblewrap_works():
        nodes.append(
            {
                "id": "snippet",
                "type": "code",
                "needs": ["start"],
                "config": {
                    "code": "def main(input):\n    print('got', input['s'])\n    return input\n",
                    "input": {"s": secret},
                },
            }
        )
    after = [n["id"] for n in nodes if n["id"] != "start"]
    nodes.append(
        {
            "id": "boom",
            "type": "fail",
            "needs": after,
            "config": {"message": f"giving up with {secret}"},
        }
    )
    return {"name": "canary", "nodes": nodes}


async def test_a_canary_secret_is_never_kept_or_shown(
    api: Api,
    tmp_path: Path,
    http_server: LocalServer,
    chat_server: ChatServer,
    llm_server: LLMServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    install_log_filter()  # as the server does at startup: on every handler, this one too

    def answer(request: LLMRequest) -> Reply:
        asked = str(request.messages[-1].get("content"))
        if request.body.get("tools") and request.messages[-1].get("role") != "tool":
            return Reply(tool_calls=(ToolCall("call-1", "echo", {"said": asked}),))
        return Reply(text=f"echo: {asked}")

    llm_server.responder = answer
    database = tmp_path / "warehouse.db"
    sqlite3.connect(database).close()
    conveyor = api.conveyor
    async with mail_server("none") as mail:
        await conveyor.set_credential("canary", "bearer", {"token": CANARY})
        await conveyor.set_credential("warehouse", "database", {"url": f"sqlite:///{database}"})
        await conveyor.set_credential("mail", "smtp", mail.credential())
        await conveyor.set_credential(
            "hook", "bearer", {"token": f"{chat_server.base_url}/services/{CANARY}"}
        )
        await conveyor.set_credential(
            "llm", "llm", {"api_key": f"key-{CANARY}", "base_url": llm_server.base_url}
        )
        await api.create(
            {
                "name": "canary-child",
                "nodes": [{"id": "got", "type": "transform", "config": {"output": "{{ input }}"}}],
            }
        )
        await api.create(definition({"http": http_server.base_url}))
        execution_id = await api.execute("canary")
        url = f"{api.ws()}/executions/{execution_id}"
        async with SSEStream(api.http, f"{url}/stream") as stream:
            await stream.rest(within=60)
        finished = await api.until_finished(execution_id, within=60)
        # It ran: every service saw the real value.
        assert finished["status"] == "failed", finished
        assert mail.received and CANARY in mail.received[0].message.get_body().get_content()
    detail = await api.store.get_execution(conveyor.workspace_id, execution_id)
    steps = {s["node_id"]: s for s in detail["steps"]}
    assert steps["boom"]["error"]["message"] == "giving up with ***"
    assert all(s["status"] == "succeeded" for n, s in steps.items() if n != "boom"), {
        n: (s["status"], s.get("error")) for n, s in steps.items()
    }
    echoed = http_server.requests_to("/echo")
    assert any(r.headers.get("X-Token") == CANARY for r in echoed)
    assert any(CANARY in r.body.decode() for r in echoed)  # the agent's tool call
    assert chat_server.posted() and CANARY in chat_server.posted()[0].path
    assert any(CANARY in m["content"] for r in llm_server.requests for m in r.messages)
    assert steps["query"]["output"]["rows"] == [{"echoed": "***"}]
    assert steps["ask"]["output"]["text"] == "echo: carried *** along"
    assert len(http_server.requests_to("/echo")) == 2  # the agent's tool called it too

    shown = [
        await api.http.get(url),
        await api.http.get(f"{url}/events"),
        await api.http.get(f"{api.ws()}/executions"),
        await api.http.get(f"{api.ws()}/notifications"),
        await api.http.get(f"{api.ws()}/tasks"),
    ]
    shown += [await api.http.get(f"{url}/steps/{node}/output") for node in steps]
    for response in shown:
        assert CANARY not in response.text, response.url
    assert CANARY not in repr(stream.seen)
    stored = everything_stored(api)
    assert "***" in stored
    assert CANARY not in stored, [line[:200] for line in stored.splitlines() if CANARY in line]
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert CANARY not in logged
