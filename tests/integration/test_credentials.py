"""Credentials: stored encrypted per workspace, never shown again, used by nodes by name or
in templates, and kept out of everything an execution stores (both databases)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import select, text

from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.errors import Conflict, InputError, NodeError, NotFound
from conveyor.nodes.base import NodeContext, node
from conveyor.redaction import LogFilter
from conveyor.secrets import Keyring, new_key
from conveyor.store.tables import credentials, metadata
from conveyor.worker import Worker
from tests.integration.httpserver import LocalServer
from tests.integration.test_runner import execute, load, start, workflow

CANARY = "canary-7f3a9c1e5b2d4068"


def stored_text(app: Conveyor) -> dict[str, str]:
    """Every row of every table, as text, by table name."""
    found: dict[str, str] = {}
    with app.store.db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = conn.execute(select(table)).all()
            found[table.name] = "\n".join(repr(tuple(r)) for r in rows)
    return found


def leaks(app: Conveyor, needle: str) -> list[str]:
    return [name for name, content in stored_text(app).items() if needle in content]


async def test_a_credential_is_stored_encrypted_and_never_read_back(conveyor: Conveyor) -> None:
    made = await conveyor.set_credential(
        "api", "bearer", {"token": CANARY}, description="the partner API"
    )
    assert made["type"] == "bearer"
    assert made["fields"] == {}
    assert made["secret_fields"] == ["token"]
    assert CANARY not in repr(made)
    listed = await conveyor.credentials()
    assert [c["name"] for c in listed] == ["api"]
    assert CANARY not in repr(listed)
    # At rest: only the ciphertext, bound to its row.
    assert leaks(conveyor, CANARY) == []
    with conveyor.store.db.engine.connect() as conn:
        sealed = conn.execute(select(credentials.c.secret)).scalar_one()
    assert sealed.startswith(f"v1.{conveyor.keyring.current_id}.")


async def test_names_types_and_fields_are_checked(conveyor: Conveyor) -> None:
    with pytest.raises(InputError, match="unknown credential type"):
        await conveyor.set_credential("x", "oauth9", {"token": "abcdefgh"})
    with pytest.raises(InputError, match="needs 'password'"):
        await conveyor.set_credential("x", "basic", {"username": "me"})
    with pytest.raises(InputError, match="unknown field"):
        await conveyor.set_credential("x", "bearer", {"token": "abcdefgh", "extra": "1"})
    with pytest.raises(InputError, match="too short"):
        await conveyor.set_credential("x", "bearer", {"token": "ab"})
    with pytest.raises(InputError, match="not valid"):
        await conveyor.set_credential("1 bad", "bearer", {"token": "abcdefgh"})
    await conveyor.set_credential("x", "smtp", {"host": "mail.example.com", "password": "hunter22"})
    with pytest.raises(Conflict):
        await conveyor.set_credential("x", "bearer", {"token": "abcdefgh"})
    (found,) = await conveyor.credentials()
    assert found["fields"] == {
        "host": "mail.example.com",
        "port": 587,
        "username": "",
        "security": "starttls",
        "sender": "",
    }
    replaced = await conveyor.set_credential("x", "bearer", {"token": "abcdefgh"}, replace=True)
    assert replaced["type"] == "bearer"
    await conveyor.delete_credential("x")
    with pytest.raises(NotFound):
        await conveyor.delete_credential("x")


class Say(BaseModel):
    text: str


async def test_a_secret_never_reaches_stored_data(
    conveyor: Conveyor, http_server: LocalServer
) -> None:
    """The token goes out in a header (the server sees it), comes back in the echo, is
    embedded in a longer string by a template, logged and raised by node code: the
    database holds none of it, and the ``***`` marker where it was."""

    @node("test.leaky", config=Say)
    async def leaky(ctx: NodeContext, config: Say) -> dict[str, Any]:
        token = (await ctx.credential("api", "bearer")).data["token"]
        ctx.log.info(f"using {token}")
        return {"said": config.text, "token": token}

    @node("test.leaky_failure", config=Say)
    async def leaky_failure(ctx: NodeContext, config: Say) -> None:
        raise NodeError(f"the server refused {config.text}", non_retryable=True)

    conveyor.registry.register(leaky)
    conveyor.registry.register(leaky_failure)
    await conveyor.set_credential("api", "bearer", {"token": CANARY})
    finished = await execute(
        conveyor,
        workflow(
            "leaks",
            {
                "id": "call",
                "type": "http.request",
                "config": {
                    "url": f"{http_server.base_url}/echo",
                    "headers": {"Authorization": "Bearer {{ secrets.api }}"},
                },
            },
            {
                "id": "echo",
                "type": "transform",
                "needs": ["call"],
                "config": {"output": "token={{ secrets.api }};seen={{ nodes.call.output }}"},
            },
            {
                "id": "code",
                "type": "test.leaky",
                "needs": ["echo"],
                "config": {"text": "say {{ secrets['api'] }} twice"},
            },
            {
                "id": "boom",
                "type": "test.leaky_failure",
                "needs": ["code"],
                "config": {"text": "{{ secrets.api }}"},
            },
        ),
    )
    assert finished.status == "failed"
    (received,) = http_server.requests_to("/echo")
    assert received.headers["Authorization"] == f"Bearer {CANARY}"
    assert finished.step("call")["input"]["headers"]["Authorization"] == "Bearer ***"
    assert finished.step("call")["output"]["body"]["headers"]["Authorization"] == "Bearer ***"
    assert finished.step("echo")["output"].startswith("token=***;")
    assert finished.step("code")["output"] == {"said": "say *** twice", "token": "***"}
    assert finished.step("code")["logs"][0]["message"] == "using ***"
    assert finished.step("boom")["error"]["message"] == "the server refused ***"
    assert CANARY not in repr(finished.execution) + repr(finished.events)
    assert leaks(conveyor, CANARY) == []


async def test_a_missing_credential_is_a_clear_step_error(conveyor: Conveyor) -> None:
    finished = await execute(
        conveyor,
        workflow(
            "missing",
            {
                "id": "use",
                "type": "transform",
                "config": {"output": "{{ secrets.nowhere }}"},
            },
        ),
    )
    assert finished.status == "failed"
    assert "nowhere" in finished.step("use")["error"]["message"]
    assert finished.step("use")["attempt"] == 1


async def test_rotate_key_reseals_everything_under_the_new_key(
    conveyor: Conveyor, http_server: LocalServer
) -> None:
    old = new_key()
    conveyor.keyring = Keyring.from_text(old)
    await conveyor.set_credential("api", "basic", {"username": "me", "password": CANARY})
    with conveyor.store.db.engine.connect() as conn:
        before = conn.execute(select(credentials.c.secret)).scalar_one()
    fresh = new_key()
    conveyor.keyring = Keyring.from_text(f"{fresh},{old}")
    assert await conveyor.rotate_key() == {"credentials": 1, "webhooks": 0}
    assert await conveyor.rotate_key() == {"credentials": 0, "webhooks": 0}
    with conveyor.store.db.engine.connect() as conn:
        after = conn.execute(select(credentials.c.secret)).scalar_one()
    assert before != after
    assert after.startswith(f"v1.{Keyring.from_text(fresh).current_id}.")
    # Only the new key from now on: the worker still decrypts (Basic auth reaches the server).
    conveyor.keyring = Keyring.from_text(fresh)
    definition = workflow(
        "basic",
        {
            "id": "call",
            "type": "http.request",
            "config": {
                "url": f"{http_server.base_url}/echo",
                "headers": {"X-Pass": "{{ secrets.api }}"},
            },
        },
    )
    execution_id = await start(conveyor, definition)
    worker = Worker(conveyor.store, conveyor.registry, SystemClock(), keyring=conveyor.keyring)
    await asyncio.wait_for(worker.run_one(execution_id), timeout=30)
    finished = await load(conveyor, execution_id)
    assert finished.status == "succeeded", finished.execution["error"]
    assert http_server.requests_to("/echo")[0].headers["X-Pass"] == CANARY


def test_log_lines_of_the_process_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    from conveyor.redaction import KNOWN

    KNOWN.add([CANARY])
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with %s", (CANARY,), None)
    assert LogFilter().filter(record)
    assert record.getMessage() == "failed with ***"


async def test_used_by_names_the_workflows_that_use_a_credential(conveyor: Conveyor) -> None:
    await conveyor.set_credential("api", "bearer", {"token": CANARY})
    await conveyor.apply(
        workflow(
            "uses", {"id": "a", "type": "transform", "config": {"output": "{{ secrets.api }}"}}
        )
    )
    await conveyor.apply(
        workflow("other", {"id": "a", "type": "transform", "config": {"output": 1}})
    )
    (found,) = await conveyor.credentials()
    assert [u["workflow"] for u in found["used_by"]] == ["uses"]
    with conveyor.store.db.engine.connect() as conn:
        assert conn.execute(text("select count(*) from credentials")).scalar_one() == 1
