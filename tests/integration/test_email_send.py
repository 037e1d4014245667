"""``email.send`` against a real local SMTP server (aiosmtpd) in plain, STARTTLS and
implicit-TLS modes with AUTH: what arrives, what is refused, and which failures retry."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import BlockedAddress, NodeError
from conveyor.nodes.base import NetworkPolicy
from conveyor.nodes.mail import EmailSend
from tests.integration.mailserver import (
    PASSWORD,
    USERNAME,
    Identity,
    MailServer,
    Mode,
    mail_server,
    make_identity,
)
from tests.integration.nodecontext import Vault, context, run

PNG = bytes(range(256)) * 4


def expected_message_id(key: str = "exec-1:step", domain: str = "conveyor.test") -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


@pytest.fixture(scope="module")
def localhost_identity(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return make_identity(tmp_path_factory.mktemp("tls"), "localhost")


def mail_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "credential": "mail",
        "to": ["Ann <ann@example.com>", "bob@example.com"],
        "subject": "Report",
        "text": "plain body",
    }
    config.update(changes)
    return config


async def send(server: MailServer, config: dict[str, Any], **ctx: Any) -> Any:
    vault = Vault(mail=("smtp", server.credential()))
    return await run(EmailSend(), context(vault, **ctx), config)


async def test_plain_smtp_with_auth_delivers_bodies_attachments_and_hidden_bcc() -> None:
    async with mail_server("none") as server:
        output = await send(
            server,
            mail_config(
                cc="carol@example.com, Dan <dan@example.com>",
                bcc="eve@example.com",
                reply_to="help@example.com",
                html="<p>html body</p>",
                attachments=[
                    {"filename": "rows.csv", "content": "a,b\n1,2\n"},
                    {"filename": "logo.png", "base64": base64.b64encode(PNG).decode()},
                    {
                        "filename": "report",
                        "file": {
                            "content_type": "application/pdf",
                            "size": 4,
                            "sha256": "ignored",
                            "base64": base64.b64encode(b"%PDF").decode(),
                        },
                    },
                ],
            ),
        )
    (got,) = server.received
    recipients = [
        "ann@example.com",
        "bob@example.com",
        "carol@example.com",
        "dan@example.com",
        "eve@example.com",
    ]
    assert output == {
        "message_id": expected_message_id(),
        "accepted": recipients,
        "refused": [],
        "response": "2.0.0 OK queued as Q1",
    }
    assert (got.mail_from, got.rcpt_tos) == ("robot@conveyor.test", recipients)
    assert got.authenticated and not got.tls
    msg = got.message
    assert msg["Message-ID"] == expected_message_id()
    assert msg["From"] == "Conveyor <robot@conveyor.test>"
    assert msg["To"] == "Ann <ann@example.com>, bob@example.com"
    assert msg["Cc"] == "carol@example.com, Dan <dan@example.com>"
    assert msg["Reply-To"] == "help@example.com"
    assert msg["Bcc"] is None and b"eve@" not in msg.as_bytes()
    assert msg["Subject"] == "Report" and msg["Date"]
    body = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert body is not None and body.get_content() == "plain body\n"
    assert html is not None and html.get_content() == "<p>html body</p>\n"
    files = {a.get_filename(): a for a in msg.iter_attachments()}
    assert list(files) == ["rows.csv", "logo.png", "report"]
    assert files["rows.csv"].get_content_type() == "text/csv"
    assert files["rows.csv"].get_content() == "a,b\n1,2\n"
    assert files["logo.png"].get_content_type() == "image/png"
    assert files["logo.png"].get_content() == PNG
    assert files["report"].get_content_type() == "application/pdf"
    assert files["report"].get_content() == b"%PDF"


async def test_html_only_message() -> None:
    async with mail_server("none") as server:
        await send(server, mail_config(text=None, html="<b>only html</b>"))
    (got,) = server.received
    assert got.message.get_content_type() == "text/html"
    assert got.message.get_content() == "<b>only html</b>\n"


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_tls_modes_verify_the_host_name_against_a_private_ca(
    mode: Mode, localhost_identity: Identity
) -> None:
    async with mail_server(mode, localhost_identity) as server:
        output = await send(server, mail_config(ca_cert=localhost_identity.ca_pem))
    (got,) = server.received
    assert output["accepted"] == ["ann@example.com", "bob@example.com"]
    assert got.tls and got.authenticated
    # The certificate names 'localhost' only: verification and SNI used the host name,
    # though the connection went to the address the guard resolved.
    assert got.server_name == "localhost"
    assert got.message["Message-ID"] == expected_message_id()


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_an_untrusted_certificate_is_refused_unless_verify_is_turned_off(
    mode: Mode, localhost_identity: Identity
) -> None:
    async with mail_server(mode, localhost_identity) as server:
        with pytest.raises(NodeError, match="certificate was not accepted") as refused:
            await send(server, mail_config())
        assert refused.value.non_retryable
        assert server.received == [] and server.handler.logins == []
        await send(server, mail_config(verify=False))
    assert len(server.received) == 1 and server.received[0].tls


async def test_a_certificate_for_another_name_is_refused(tmp_path: Path) -> None:
    other = make_identity(tmp_path, "mail.elsewhere.test")
    async with mail_server("tls", other) as server:
        with pytest.raises(NodeError, match="certificate was not accepted") as refused:
            await send(server, mail_config(ca_cert=other.ca_pem))
    assert refused.value.non_retryable
    assert "Hostname mismatch" in str(refused.value)


async def test_starttls_is_never_skipped_when_the_server_does_not_offer_it() -> None:
    async with mail_server("none") as server:
        vault = Vault(mail=("smtp", server.credential(security="starttls")))
        with pytest.raises(NodeError, match="STARTTLS") as refused:
            await run(EmailSend(), context(vault), mail_config())
    assert refused.value.non_retryable
    assert server.handler.logins == [] and server.received == []


async def test_a_refused_login_is_not_retried() -> None:
    async with mail_server("none") as server:
        vault = Vault(mail=("smtp", server.credential(password="wrong-password")))
        with pytest.raises(NodeError, match="refused the login: 535") as refused:
            await run(EmailSend(), context(vault), mail_config())
    assert refused.value.non_retryable
    # each offered mechanism (PLAIN, LOGIN) tried once, every one refused
    assert set(server.handler.logins) == {(USERNAME, False)}
    assert server.received == []
    assert "wrong-password" not in str(refused.value) and PASSWORD not in str(refused.value)


async def test_some_recipients_refused_the_rest_get_it() -> None:
    async with mail_server("none") as server:
        output = await send(server, mail_config(to=["ann@example.com", "nobody@example.com"]))
    assert output["accepted"] == ["ann@example.com"]
    assert output["refused"] == [
        {"recipient": "nobody@example.com", "code": 550, "message": "5.1.1 <nobody>: no such user"}
    ]
    assert server.received[0].rcpt_tos == ["ann@example.com"]


@pytest.mark.parametrize(
    ("to", "retryable"),
    [(["nobody@example.com"], False), (["busy@example.com"], True)],
    ids=["permanent-550", "temporary-451"],
)
async def test_every_recipient_refused(to: list[str], retryable: bool) -> None:
    async with mail_server("none") as server:
        with pytest.raises(NodeError, match="refused every recipient") as refused:
            await send(server, mail_config(to=to))
    assert refused.value.non_retryable is not retryable
    (reply,) = refused.value.details["refused"]
    assert reply["recipient"] == to[0] and reply["code"] in (550, 451)
    assert server.received == []


async def test_a_retried_send_carries_the_same_message_id() -> None:
    async with mail_server("none", fail_data=1) as server:
        with pytest.raises(NodeError, match="refused the message: 451") as first:
            await send(server, mail_config(), attempt=1)
        assert not first.value.non_retryable
        output = await send(server, mail_config(), attempt=2)
        other = await send(server, mail_config(), node_id="another")
    ids = [r.message["Message-ID"] for r in server.received]
    assert ids == [expected_message_id()] * 2 + [expected_message_id("exec-1:another")]
    assert output["message_id"] == expected_message_id()
    assert other["message_id"] != output["message_id"]


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    vault = Vault(mail=("smtp", {"host": "127.0.0.1", "port": port, "security": "none"}))
    config = mail_config(sender="robot@conveyor.test", timeout="5s")
    with pytest.raises(NodeError, match="cannot connect") as failed:
        await run(EmailSend(), context(vault), config)
    assert not failed.value.non_retryable


async def test_the_outbound_guard_refuses_a_loopback_server() -> None:
    async with mail_server("none") as server:
        with pytest.raises(BlockedAddress, match="loopback"):
            await send(server, mail_config(), network=NetworkPolicy(allow_private=False))
    assert server.received == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subject": "Hi\r\nBcc: eve@example.com"}, "cannot be built"),
        ({"to": "not an address"}, "is not an email address"),
        ({"sender": "no-domain"}, "is not an email address"),
    ],
)
async def test_bad_messages_fail_before_connecting(changes: dict[str, Any], message: str) -> None:
    async with mail_server("none") as server:
        with pytest.raises(NodeError, match=message) as failed:
            await send(server, mail_config(**changes))
    assert failed.value.non_retryable
    assert server.handler.logins == [] and server.received == []


async def test_a_credential_of_another_type_is_refused() -> None:
    vault = Vault(mail=("bearer", {"token": "abcdefgh"}))
    with pytest.raises(NodeError, match="needs smtp") as failed:
        await run(EmailSend(), context(vault), mail_config())
    assert failed.value.non_retryable


class SilentServer:
    """Accepts connections and never says a word (no SMTP banner); notes when the client
    has closed its side."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected.set()
        await reader.read()  # until end of file
        self.closed.set()
        writer.close()


async def silent_server(silent: SilentServer) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(silent.handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_silent_server_times_out_retryably() -> None:
    silent = SilentServer()
    server, port = await silent_server(silent)
    vault = Vault(mail=("smtp", {"host": "127.0.0.1", "port": port, "security": "none"}))
    config = mail_config(sender="robot@conveyor.test", timeout="300ms")
    try:
        with pytest.raises(NodeError, match="timed out") as failed:
            await asyncio.wait_for(run(EmailSend(), context(vault), config), timeout=10)
        await asyncio.wait_for(silent.closed.wait(), timeout=5)
    finally:
        server.close()
    assert not failed.value.non_retryable


async def test_cancelling_a_send_drops_the_connection_at_once() -> None:
    silent = SilentServer()
    server, port = await silent_server(silent)
    vault = Vault(mail=("smtp", {"host": "127.0.0.1", "port": port, "security": "none"}))
    config = mail_config(sender="robot@conveyor.test", timeout="60s")
    sending = asyncio.create_task(run(EmailSend(), context(vault), config))
    try:
        await asyncio.wait_for(silent.connected.wait(), timeout=10)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(sending, timeout=2)
        await asyncio.wait_for(silent.closed.wait(), timeout=2)
    finally:
        server.close()
