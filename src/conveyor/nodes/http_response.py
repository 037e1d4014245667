"""What the ``http.request`` node makes of a response: a parsed body or a file, the status
check (with Retry-After for the retry policy), and the small JSON paths of pagination."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from conveyor.errors import HttpStatusError, NodeError
from conveyor.nodes.http_exchange import Received

# Media types read as text; any other declared type is kept as a file.
TEXT_MARKERS = ("json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv", "graphql")
RETRYABLE_STATUSES = frozenset({408, 425, 429})


def media_type(content_type: str) -> str:
    return content_type.split(";")[0].strip().lower()


def is_text(content_type: str) -> bool | None:
    """Whether a declared content type is text (None: none declared)."""
    mime = media_type(content_type)
    if not mime:
        return None
    return mime.startswith("text/") or any(marker in mime for marker in TEXT_MARKERS)


def decoded(received: Received, max_file_bytes: int) -> dict[str, Any]:
    """``{"body": ...}`` for text (JSON parsed), ``{"body": None, "file": {...}}`` for
    anything else; a response without a content type is text when it is valid UTF-8."""
    text = is_text(received.content_type)
    if text is None:
        try:
            return {"body": received.content.decode("utf-8")}
        except UnicodeDecodeError:
            if len(received.content) > max_file_bytes:
                raise NodeError(
                    f"{received.where}: the binary response is over "
                    f"max_file_bytes ({max_file_bytes} bytes)",
                    non_retryable=True,
                ) from None
    if text is False or text is None:
        return {"body": None, "file": file_of(received)}
    return {"body": _text_body(received)}


def _text_body(received: Received) -> Any:
    charset = _charset(received.content_type)
    try:
        text = received.content.decode(charset, errors="replace")
    except LookupError:
        text = received.content.decode("utf-8", errors="replace")
    if "json" in media_type(received.content_type) and not received.truncated:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _charset(content_type: str) -> str:
    found = re.search(r"charset=\"?([\w.:-]+)", content_type, re.IGNORECASE)
    return found.group(1) if found else "utf-8"


def file_of(received: Received) -> dict[str, Any]:
    data = received.content
    return {
        "content_type": media_type(received.content_type) or "application/octet-stream",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "base64": base64.b64encode(data).decode("ascii"),
    }


def check_status(received: Received, accepted: bool, body: Any, now: datetime) -> None:
    """Raise HttpStatusError for an unaccepted status: retryable for 5xx, 408, 425 and
    429, with the response's Retry-After as the least delay before the next attempt."""
    if accepted:
        return
    status = received.status
    raise HttpStatusError(
        f"{received.where} answered {status}",
        non_retryable=not (status >= 500 or status in RETRYABLE_STATUSES),
        retry_after=retry_after(received.headers, now),
        details={"status": status, "body": body},
    )


def retry_after(headers: httpx.Headers, now: datetime) -> timedelta | None:
    """Retry-After as a delay: seconds, or an HTTP-date taken relative to the response's
    own Date header (so the two clocks need not agree), else to ``now``."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return timedelta(seconds=float(value))
    when = _http_date(value)
    if when is None:
        return None
    base = _http_date(headers.get("date", "")) or now
    return max(when - base, timedelta(0))


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_STEP = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def json_path(value: Any, path: str) -> Any:
    """A value inside a JSON body by a path such as ``$.data.items``, ``body.next``,
    ``links.next`` or ``results[0].id``; ``$`` or ``body`` alone is the body. None when
    any step is missing."""
    text = path.strip()
    for root in ("$", "body"):
        if text == root:
            return value
        if text.startswith((root + ".", root + "[")):
            text = text[len(root) :].lstrip(".")
            break
    for index, key in _STEP.findall(text):
        if index:
            position = int(index)
            value = value[position] if isinstance(value, list) and position < len(value) else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            return None
    return value
