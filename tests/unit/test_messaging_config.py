"""The pure parts of email.send and chat.post: config checks, the Message-ID, attachment
types, and reading how long a rate-limited service asks to wait."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import ValidationError

from conveyor.nodes.chat import retry_after
from conveyor.nodes.mail import Attachment, EmailSendConfig, message_id


def test_message_id_is_the_hashed_key_at_the_sender_domain() -> None:
    digest = hashlib.sha256(b"ex-9:mail").hexdigest()[:32]
    assert message_id("ex-9:mail", "robot@example.com") == f"<{digest}@example.com>"
    assert message_id("ex-9:mail", "a@bücher.example") == f"<{digest}@xn--bcher-kva.example>"
    assert message_id("ex-9:other", "x@example.com") != message_id("ex-9:mail", "x@example.com")


def test_recipients_from_a_string_or_a_list_and_at_least_one() -> None:
    config = EmailSendConfig.model_validate(
        {"credential": "m", "to": " a@x.com ", "bcc": ["b@x.com", " "]}
    )
    assert (config.to, config.cc, config.bcc) == (["a@x.com"], [], ["b@x.com"])
    with pytest.raises(ValidationError, match="at least one recipient"):
        EmailSendConfig.model_validate({"credential": "m", "to": []})


@pytest.mark.parametrize(
    ("attachment", "message"),
    [
        ({"filename": "a"}, "exactly one of"),
        ({"filename": "a", "content": "x", "base64": "eA=="}, "exactly one of"),
        ({"filename": "a", "base64": "not base64!"}, "not valid base64"),
        ({"filename": "a", "file": {"base64": "%%"}}, "not valid base64"),
        ({"filename": "a", "content": "x", "content_type": "text"}, "content_type"),
    ],
)
def test_attachments_are_checked(attachment: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Attachment.model_validate(attachment)


def test_attachment_types_given_from_the_file_or_guessed() -> None:
    def kind(**fields: object) -> str:
        return Attachment.model_validate({"filename": "x", **fields}).mime_type()

    assert kind(content="a") == "text/plain"
    assert kind(base64="AA==") == "application/octet-stream"
    assert kind(file={"base64": "AA==", "content_type": "image/gif; q=1"}) == "image/gif"
    assert kind(content="a", content_type="text/csv") == "text/csv"
    named = Attachment.model_validate({"filename": "r.pdf", "base64": "AA=="})
    assert named.mime_type() == "application/pdf"


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"Retry-After": "5"}, "", timedelta(seconds=5)),
        ({"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}, "", timedelta(seconds=30)),
        ({"Retry-After": "Thu, 01 Jan 2026 11:00:00 GMT"}, "", timedelta(0)),
        ({}, {"retry_after": 1.5, "global": False}, timedelta(seconds=1.5)),
        ({}, {"ok": False, "parameters": {"retry_after": 4}}, timedelta(seconds=4)),
        ({"Retry-After": "soon"}, "", None),
        ({}, {"retry_after": True}, None),
    ],
)
def test_how_long_to_wait_after_a_429(
    headers: dict[str, str], body: object, expected: timedelta | None
) -> None:
    response = httpx.Response(429, headers=headers)
    assert retry_after(response, body, NOW) == expected
