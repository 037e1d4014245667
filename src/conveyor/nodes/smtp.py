"""One SMTP delivery: a checked connection, TLS against the host name, and SMTP replies
turned into step errors (retryable or not)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from conveyor.errors import NodeError
from conveyor.nodes.base import Credential, NetworkPolicy
from conveyor.nodes.mail import DEFAULT_PORTS
from conveyor.nodes.outbound import resolve


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: str
    username: str = ""
    password: str = field(default="", repr=False)
    ca_cert: str | None = None
    verify: bool = True

    @classmethod
    def from_credential(
        cls, credential: Credential, ca_cert: str | None, verify: bool
    ) -> SmtpServer:
        data = credential.data
        security = str(data.get("security") or "starttls").lower()
        if security not in DEFAULT_PORTS:
            raise NodeError(
                f"credential '{credential.name}': security must be starttls, tls or none, "
                f"not '{security}'",
                non_retryable=True,
            )
        host = str(data.get("host") or "").strip()
        if not host:
            raise NodeError(f"credential '{credential.name}' has no host", non_retryable=True)
        try:
            port = int(data.get("port") or DEFAULT_PORTS[security])
        except (TypeError, ValueError):
            raise NodeError(
                f"credential '{credential.name}': port is not a number", non_retryable=True
            ) from None
        return cls(
            host=host,
            port=port,
            security=security,
            username=str(data.get("username") or ""),
            password=str(data.get("password") or ""),
            ca_cert=ca_cert,
            verify=verify,
        )


@dataclass(frozen=True)
class Delivery:
    accepted: list[str]
    refused: list[dict[str, Any]]
    response: str


async def deliver(
    server: SmtpServer,
    message: EmailMessage,
    sender: str,
    recipients: list[str],
    policy: NetworkPolicy,
    timeout: float,  # noqa: ASYNC109 (bounds each SMTP operation, not the whole call)
) -> Delivery:
    """Send ``message`` once; raise NodeError, retryable unless a retry cannot help."""
    where = f"SMTP {server.host}:{server.port}"
    tls = await asyncio.to_thread(_tls_context, server) if server.security != "none" else None
    sock = await _connect(server, policy, timeout, where)
    client = aiosmtplib.SMTP(
        hostname=server.host,  # the name TLS verifies; the socket is already connected
        sock=sock,
        use_tls=server.security == "tls",
        start_tls=server.security == "starttls",
        tls_context=tls,
        timeout=timeout,
    )
    # The conversation runs in a task of its own, awaited through a shield: aiosmtplib waits
    # with asyncio.wait_for, which on Python 3.11 can swallow a cancellation that lands as
    # an operation completes. A cancelled step then still drops the connection at once.
    conversation = asyncio.ensure_future(_converse(client, server, message, sender, recipients))
    try:
        refused, response = await asyncio.shield(conversation)
    except (aiosmtplib.SMTPException, OSError) as exc:
        client.close()
        raise _error(exc, where) from exc
    except BaseException:
        client.close()
        conversation.cancel()
        conversation.add_done_callback(_retrieve)
        raise
    else:
        await _quit(client, timeout)
    finally:
        sock.close()
    return Delivery(
        accepted=[r for r in recipients if r not in refused],
        refused=[
            {"recipient": r, "code": reply.code, "message": reply.message}
            for r, reply in refused.items()
        ],
        response=f"{response}",
    )


async def _converse(
    client: aiosmtplib.SMTP,
    server: SmtpServer,
    message: EmailMessage,
    sender: str,
    recipients: list[str],
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    await client.connect()
    if server.username:
        await client.login(server.username, server.password)
    return await client.send_message(message, sender=sender, recipients=recipients)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark an abandoned conversation's outcome as seen (it failed or was cancelled)."""
    if not task.cancelled():
        task.exception()


def _tls_context(server: SmtpServer) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if server.ca_cert:
        try:
            context.load_verify_locations(cadata=server.ca_cert)
        except (ssl.SSLError, ValueError) as exc:
            raise NodeError(
                f"config.ca_cert is not a PEM certificate: {exc}", non_retryable=True
            ) from None
    if not server.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _connect(
    server: SmtpServer,
    policy: NetworkPolicy,
    timeout: float,  # noqa: ASYNC109
    where: str,
) -> socket.socket:
    """A TCP connection to the checked address of the server's host."""
    address = await resolve(server.host, server.port, policy)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, (address, server.port))
    except TimeoutError:
        sock.close()
        raise NodeError(f"{where}: connection timed out after {timeout:g}s") from None
    except OSError as exc:
        sock.close()
        raise NodeError(f"{where}: cannot connect: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise
    return sock


async def _quit(client: aiosmtplib.SMTP, timeout: float) -> None:  # noqa: ASYNC109
    """QUIT after the message was accepted; a server slow to answer it is not waited on
    for long (the message is already the server's)."""
    try:
        await client.quit(timeout=min(timeout, 5.0))
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _error(exc: Exception, where: str) -> NodeError:
    """Permanent (5xx) replies and TLS problems are the user's to fix; the rest may pass."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = [
            {"recipient": r.recipient, "code": r.code, "message": r.message} for r in exc.recipients
        ]
        permanent = all(r.code >= 500 for r in exc.recipients)
        text = "; ".join(f"{r['recipient']}: {r['code']} {r['message']}" for r in replies)
        return NodeError(
            f"{where} refused every recipient: {text}",
            non_retryable=permanent,
            details={"refused": replies},
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply_error(exc, where)
    tls = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if isinstance(tls, ssl.SSLCertVerificationError):
        return NodeError(
            f"{where}: the server's TLS certificate was not accepted: {tls.verify_message}"
            " (give config.ca_cert for a private CA)",
            non_retryable=True,
        )
    if isinstance(tls, ssl.SSLError):
        return NodeError(f"{where}: TLS failed: {tls}", non_retryable=True)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return NodeError(f"{where} timed out: {exc}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | OSError):
        return NodeError(f"{where}: {exc}")
    # STARTTLS or AUTH not offered, a message that cannot be encoded: retrying cannot help.
    return NodeError(f"{where}: {exc}", non_retryable=True)


def _reply_error(exc: aiosmtplib.SMTPResponseException, where: str) -> NodeError:
    permanent = 500 <= exc.code < 600
    details = {"code": exc.code, "message": exc.message}
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        what = "refused the login"
    elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
        what = f"refused the sender {exc.sender}"
    elif isinstance(exc, aiosmtplib.SMTPDataError):
        what = "refused the message"
    else:
        what = "answered"
    return NodeError(
        f"{where} {what}: {exc.code} {exc.message}", non_retryable=permanent, details=details
    )
