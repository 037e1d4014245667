"""A real local SMTP server for integration tests (aiosmtpd, in the test's event loop) in
plain, STARTTLS or implicit-TLS mode with AUTH, and the certificates it presents.

The server accepts the login ``mailer`` / ``s3cret``. Recipients whose local part is
``nobody`` are refused with 550, ``busy`` with 451. ``fail_data`` answers the first N
DATA commands with 451 (the message is still recorded). Every message that reached DATA
is kept in ``received``, parsed, with its envelope, whether TLS was on, and the TLS server
name (SNI) the client asked for.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

USERNAME = "mailer"
PASSWORD = "s3cret"
Mode = Literal["none", "starttls", "tls"]


@dataclass(frozen=True)
class Identity:
    """A private CA (its PEM is what a client trusts) and a server context whose
    certificate, signed by it, names ``hostname`` only (no IP address)."""

    ca_pem: str
    server_context: ssl.SSLContext


def make_identity(folder: Path, hostname: str) -> Identity:
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Conveyor test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = folder / f"{hostname}.crt", folder / f"{hostname}.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return Identity(ca.public_bytes(serialization.Encoding.PEM).decode(), context)


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool
    server_name: str | None


@dataclass
class Handler:
    fail_data: int = 0
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        local = address.partition("@")[0]
        if local == "nobody":
            return "550 5.1.1 <nobody>: no such user"
        if local == "busy":
            return "451 4.3.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        raw = envelope.original_content or envelope.content or b""
        assert isinstance(raw, bytes)
        # Line ends as Python writes them, so bodies compare with plain strings.
        message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                tls=tls,
                authenticated=bool(session.authenticated),
                server_name=self.server_names[-1] if self.server_names else None,
            )
        )
        if len(self.received) <= self.fail_data:
            return "451 4.3.0 temporary failure, try again"
        return f"250 2.0.0 OK queued as Q{len(self.received)}"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        ok = data.login.decode() == USERNAME and data.password.decode() == PASSWORD
        self.logins.append((data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)


@dataclass
class MailServer:
    host: str
    port: int
    mode: Mode
    handler: Handler

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def credential(self, **changes: Any) -> dict[str, Any]:
        """Credential data (type smtp) for this server."""
        data: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": USERNAME,
            "password": PASSWORD,
            "security": self.mode,
            "sender": "Conveyor <robot@conveyor.test>",
        }
        data.update(changes)
        return {k: v for k, v in data.items() if v is not None}


@asynccontextmanager
async def mail_server(
    mode: Mode, identity: Identity | None = None, *, host: str = "localhost", fail_data: int = 0
) -> AsyncIterator[MailServer]:
    """An SMTP server on the address ``host`` resolves to first (where a client goes)."""
    handler = Handler(fail_data=fail_data)
    context = identity.server_context if identity is not None else None
    if context is not None:
        context.sni_callback = _record_sni(handler)
    loop = asyncio.get_running_loop()
    address = (await loop.getaddrinfo(host, 0, type=1))[0][4][0]

    def factory() -> SMTP:
        return SMTP(
            handler,
            hostname="mx.conveyor.test",
            tls_context=context if mode == "starttls" else None,
            require_starttls=mode == "starttls",
            auth_require_tls=mode == "starttls",
            authenticator=handler.authenticate,
        )

    server = await loop.create_server(
        factory, host=address, port=0, ssl=context if mode == "tls" else None
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield MailServer(host=host, port=port, mode=mode, handler=handler)
    finally:
        server.close()
        await server.wait_closed()


def _record_sni(handler: Handler) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], None]:
    def record(connection: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        handler.server_names.append(name)

    return record
