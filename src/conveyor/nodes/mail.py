"""The ``email.send`` node type: its config, and the message it builds (stdlib ``email``)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from conveyor.durations import Duration
from conveyor.errors import NodeError
from conveyor.nodes.base import Credential, NodeContext, NodeType

Security = Literal["starttls", "tls", "none"]
DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "none": 25}


class FileValue(BaseModel):
    """A file as steps output it (``http.request``'s ``file``): only these keys are read."""

    model_config = ConfigDict(extra="ignore")

    base64: str
    content_type: str | None = None


class Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255, description="the attachment's name")
    content: str | None = Field(default=None, description="text content (sent as UTF-8)")
    base64: str | None = Field(default=None, description="binary content, base64-encoded")
    file: FileValue | None = Field(
        default=None,
        description="a file output of an earlier step ({base64, content_type, ...}), "
        "e.g. '{{ nodes.download.output.body.file }}'",
    )
    content_type: str | None = Field(
        default=None,
        pattern=r"^[\w.+-]+/[\w.+-]+$",
        description="MIME type; default: the file's, else guessed from the filename",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Attachment:
        given = [v for v in (self.content, self.base64, self.file) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'content', 'base64' or 'file'")
        encoded = self.file.base64 if self.file is not None else self.base64
        if encoded is not None:
            _decode(encoded)
        return self

    def data(self) -> bytes | str:
        if self.content is not None:
            return self.content
        return _decode(self.file.base64 if self.file is not None else self.base64 or "")

    def mime_type(self) -> str:
        if self.content_type:
            return self.content_type
        if self.file is not None and self.file.content_type:
            return self.file.content_type.split(";")[0].strip()
        guessed, _ = mimetypes.guess_type(self.filename)
        if guessed:
            return guessed
        return "text/plain" if self.content is not None else "application/octet-stream"


def _decode(value: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError("'base64' is not valid base64") from None


def _as_list(value: Any) -> Any:
    items = [value] if isinstance(value, str) else value
    if isinstance(items, list):
        return [i.strip() for i in items if not isinstance(i, str) or i.strip()]
    return items


# One address, several separated by commas, or a list of them.
Addresses = Annotated[
    list[str],
    BeforeValidator(_as_list),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


class EmailSendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: str = Field(
        min_length=1,
        description="name of an smtp credential (host, port, username, password, "
        "security: starttls|tls|none, sender)",
        json_schema_extra={"x-template": False},
    )
    to: Addresses = Field(default_factory=list, description="recipients: a list or 'a, b'")
    cc: Addresses = Field(default_factory=list, description="copy recipients")
    bcc: Addresses = Field(default_factory=list, description="blind copies (not in headers)")
    sender: str | None = Field(
        default=None, description="From: address; default: the credential's sender"
    )
    reply_to: Addresses = Field(default_factory=list, description="Reply-To: addresses")
    subject: str = Field(default="", max_length=998)
    text: str | None = Field(default=None, description="the plain-text body")
    html: str | None = Field(default=None, description="the HTML body")
    attachments: list[Attachment] = Field(default_factory=list)
    timeout: Duration = Field(
        default=timedelta(seconds=30), description="bound on each network operation"
    )
    ca_cert: str | None = Field(
        default=None,
        description="a CA certificate (PEM) to trust for the server's certificate, besides "
        "the system's (a private mail relay)",
    )
    verify: bool = Field(
        default=True,
        description="verify the server's TLS certificate and name; false only for a "
        "server you trust by other means",
    )

    @model_validator(mode="after")
    def _someone(self) -> EmailSendConfig:
        if not (self.to or self.cc or self.bcc):
            raise ValueError("give at least one recipient in 'to', 'cc' or 'bcc'")
        return self


def envelope(addresses: list[str], field: str) -> list[str]:
    """The bare addresses in header values like ``"Ann <ann@example.com>, bob@example.com"``."""
    found = [address for _, address in getaddresses(addresses)]
    for address in found:
        local, at, domain = address.rpartition("@")
        if not (local and at and domain) or any(c.isspace() for c in address):
            raise NodeError(
                f"config.{field}: '{address}' is not an email address", non_retryable=True
            )
    if len(found) < len(addresses):
        raise NodeError(f"config.{field}: could not read {addresses!r}", non_retryable=True)
    return found


def message_id(idempotency_key: str, sender: str) -> str:
    """The same for every attempt of a step, so a receiver can drop a retried duplicate."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    domain = sender.rpartition("@")[2]
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        domain = "conveyor.invalid"
    return f"<{digest}@{domain}>"


def sender_of(config: EmailSendConfig, credential: Credential) -> str:
    sender = config.sender or str(credential.data.get("sender") or "")
    if not sender:
        username = str(credential.data.get("username") or "")
        sender = username if "@" in username else ""
    if not sender:
        raise NodeError(
            f"no sender: give 'sender', or set one on credential '{credential.name}'",
            non_retryable=True,
        )
    return sender


def build_message(
    ctx: NodeContext, config: EmailSendConfig, sender: str, message_id: str
) -> EmailMessage:
    """The message as sent; Bcc recipients are left out of its headers."""
    msg = EmailMessage()
    try:
        msg["From"] = sender
        if config.to:
            msg["To"] = ", ".join(config.to)
        if config.cc:
            msg["Cc"] = ", ".join(config.cc)
        if config.reply_to:
            msg["Reply-To"] = ", ".join(config.reply_to)
        msg["Subject"] = config.subject
        msg["Date"] = format_datetime(ctx.now())
        msg["Message-ID"] = message_id
        _body(msg, config)
        for attachment in config.attachments:
            _attach(msg, attachment)
    except (ValueError, TypeError) as exc:
        raise NodeError(f"the message cannot be built: {exc}", non_retryable=True) from exc
    return msg


def _body(msg: EmailMessage, config: EmailSendConfig) -> None:
    if config.text is not None:
        msg.set_content(config.text)
        if config.html is not None:
            msg.add_alternative(config.html, subtype="html")
    elif config.html is not None:
        msg.set_content(config.html, subtype="html")
    else:
        msg.set_content("")


def _attach(msg: EmailMessage, attachment: Attachment) -> None:
    maintype, subtype = attachment.mime_type().split("/", 1)
    data = attachment.data()
    if isinstance(data, str):
        if maintype == "text":
            msg.add_attachment(data, subtype=subtype, filename=attachment.filename)
            return
        data = data.encode()
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=attachment.filename)


class EmailSend(NodeType):
    name = "email.send"
    title = "Send email"
    category = "messaging"
    icon = "mail"
    description = (
        "Send an email over SMTP (STARTTLS or TLS): plain and HTML bodies, attachments; "
        "the Message-ID is derived from the step's idempotency key."
    )
    config_model = EmailSendConfig
    example = {
        "id": "mail",
        "type": "email.send",
        "config": {
            "credential": "mailer",
            "to": "{{ input.email }}",
            "subject": "Your report",
            "text": "Hello {{ input.name }}, the report is attached.",
            "attachments": [{"filename": "report.csv", "content": "{{ nodes.report.output.csv }}"}],
        },
    }

    async def run(self, ctx: NodeContext, config: EmailSendConfig) -> Any:
        from conveyor.nodes.smtp import SmtpServer, deliver

        credential = await ctx.credential(config.credential, "smtp")
        sender = sender_of(config, credential)
        from_address = envelope([sender], "sender")[0]
        recipients = list(
            dict.fromkeys(
                envelope(config.to, "to") + envelope(config.cc, "cc") + envelope(config.bcc, "bcc")
            )
        )
        envelope(config.reply_to, "reply_to")
        mid = message_id(ctx.idempotency_key, from_address)
        msg = build_message(ctx, config, sender, mid)
        server = SmtpServer.from_credential(credential, config.ca_cert, config.verify)
        delivery = await deliver(
            server, msg, from_address, recipients, ctx.network, config.timeout.total_seconds()
        )
        ctx.report_usage(api_calls=1)
        ctx.log.info(
            f"SMTP {server.host}:{server.port} ({server.security}): {mid} accepted for "
            f"{len(delivery.accepted)} of {len(recipients)} recipients"
        )
        return {
            "message_id": mid,
            "accepted": delivery.accepted,
            "refused": delivery.refused,
            "response": delivery.response,
        }
