"""Webhook requests: verifying their credentials or signatures, and turning them into
trigger data and a delivery id. Pure functions over the raw request; no I/O.

Every signature is checked over the raw request bytes (never a re-serialized body) with a
constant-time comparison; a signed timestamp must be within ``auth.tolerance`` of now, so a
captured request cannot be replayed later (and within the window, its delivery id dedupes
it). A failed check raises :class:`~conveyor.errors.Unauthorized` with a reason that says
what was wrong but never echoes the expected value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from conveyor.engine.definition import TooLarge, load_json
from conveyor.engine.templates import TemplateProblem, render
from conveyor.engine.triggers import HmacScheme, WebhookSpec
from conveyor.errors import InputError, Unauthorized

STANDARD_ID = "webhook-id"
STANDARD_TIMESTAMP = "webhook-timestamp"
STANDARD_SIGNATURE = "webhook-signature"
GITHUB_SIGNATURE = "x-hub-signature-256"
STRIPE_SIGNATURE = "stripe-signature"
SLACK_SIGNATURE = "x-slack-signature"
SLACK_TIMESTAMP = "x-slack-request-timestamp"
# Never passed on as trigger data: credentials, whatever the auth mode.
ALWAYS_HIDDEN = frozenset(
    {
        "authorization",
        "cookie",
        "proxy-authorization",
        STANDARD_SIGNATURE,
        GITHUB_SIGNATURE,
        "x-hub-signature",
        STRIPE_SIGNATURE,
        SLACK_SIGNATURE,
    }
)
# The delivery id header a signature scheme signs (used without ``dedupe``). Others sign no
# id (GitHub's X-GitHub-Delivery is not signed: a replay could change it at will).
SIGNED_ID_HEADERS = {"standard": STANDARD_ID}
MAX_DELIVERY_ID = 150  # longer ids (header values) are hashed to fit the idempotency key
_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


@dataclass(frozen=True)
class WebhookRequest:
    """What verification and trigger data need of a request. ``headers`` keys are lower
    case; ``body`` is the raw bytes as received."""

    method: str
    path: str
    url: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes
    client: str | None


# -- verification -------------------------------------------------------------------------------


def verify(
    spec: WebhookSpec, secret: str | None, request: WebhookRequest, now: datetime
) -> str | None:
    """Return if ``request`` carries the credentials or signature ``spec`` asks for (with a
    signature: the one it was proven by, as computed here, which names the request exactly
    and so catches its replays); else raise Unauthorized."""
    auth = spec.auth
    if auth.mode == "none":
        return None
    if not secret:
        raise Unauthorized("this webhook has no secret yet: set one before sending to it")
    if auth.mode == "header":
        _verify_token(request.headers.get(auth.header.lower()), secret, auth.header)
    elif auth.mode == "basic":
        _verify_basic(request.headers.get("authorization"), auth.username or "", secret)
    else:
        tolerance = auth.tolerance.total_seconds()
        check = _SCHEMES[auth.scheme]
        return check(spec, secret, request, now.timestamp(), tolerance)
    return None


def _same(a: str | bytes, b: str | bytes) -> bool:
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def _verify_token(value: str | None, secret: str, header: str) -> None:
    if not value:
        raise Unauthorized(f"the {header} header is missing")
    token = value[7:].strip() if value.lower().startswith("bearer ") else value.strip()
    if not _same(token, secret):
        raise Unauthorized(f"the {header} header does not hold this webhook's token")


def _verify_basic(value: str | None, username: str, secret: str) -> None:
    if not value or not value.lower().startswith("basic "):
        raise Unauthorized("HTTP basic credentials are missing")
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("HTTP basic credentials are malformed") from None
    user, _, password = decoded.partition(":")
    # Both compared, always: the time taken does not tell which one was wrong.
    good_user = _same(user, username)
    good_password = _same(password, secret)
    if not (good_user and good_password):
        raise Unauthorized("wrong username or password")


def _timestamp(raw: str | None, name: str, now: float, tolerance: float) -> str:
    if not raw:
        raise Unauthorized(f"the {name} is missing")
    try:
        value = int(raw.strip())
    except ValueError:
        raise Unauthorized(f"the {name} is not a number of seconds") from None
    if abs(now - value) > tolerance:
        raise Unauthorized(
            f"the {name} is outside the {tolerance:g}s replay window (stale or replayed)"
        )
    return raw.strip()


def standard_key(secret: str) -> bytes:
    """Standard Webhooks' key: the base64 after ``whsec_`` (any other secret: its bytes)."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[6:], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def _mac(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key, message, _DIGESTS[algorithm]).digest()


def _standard(
    spec: WebhookSpec, secret: str, request: WebhookRequest, now: float, tolerance: float
) -> str:
    headers = request.headers
    ident = headers.get(STANDARD_ID)
    if not ident:
        raise Unauthorized("the webhook-id header is missing")
    ts = _timestamp(headers.get(STANDARD_TIMESTAMP), "webhook-timestamp", now, tolerance)
    signed = f"{ident}.{ts}.".encode() + request.body
    expected = base64.b64encode(_mac(standard_key(secret), signed)).decode()
    offered = (headers.get(STANDARD_SIGNATURE) or "").split()
    if not offered:
        raise Unauthorized("the webhook-signature header is missing")
    # Several signatures (key rotation): one valid v1 signature suffices. Each is compared.
    found = False
    for item in offered:
        version, _, value = item.partition(",")
        if version == "v1" and _same(value, expected):
            found = True
    if not found:
        raise Unauthorized("no webhook-signature matches this request")
    return expected


def _github(
    spec: WebhookSpec, secret: str, request: WebhookRequest, now: float, tolerance: float
) -> str:
    offered = request.headers.get(GITHUB_SIGNATURE)
    if not offered:
        raise Unauthorized("the X-Hub-Signature-256 header is missing")
    expected = "sha256=" + _mac(secret.encode(), request.body).hex()
    if not _same(offered.strip(), expected):
        raise Unauthorized("X-Hub-Signature-256 does not match this request")
    return expected


def _stripe(
    spec: WebhookSpec, secret: str, request: WebhookRequest, now: float, tolerance: float
) -> str:
    header = request.headers.get(STRIPE_SIGNATURE)
    if not header:
        raise Unauthorized("the Stripe-Signature header is missing")
    pairs = [item.strip().partition("=") for item in header.split(",")]
    stamps = [v for k, _, v in pairs if k == "t"]
    ts = _timestamp(stamps[0] if stamps else None, "Stripe-Signature timestamp", now, tolerance)
    expected = _mac(secret.encode(), f"{ts}.".encode() + request.body).hex()
    found = False
    for key, _, value in pairs:
        if key == "v1" and _same(value, expected):
            found = True
    if not found:
        raise Unauthorized("no v1 signature in Stripe-Signature matches this request")
    return expected


def _slack(
    spec: WebhookSpec, secret: str, request: WebhookRequest, now: float, tolerance: float
) -> str:
    offered = request.headers.get(SLACK_SIGNATURE)
    if not offered:
        raise Unauthorized("the X-Slack-Signature header is missing")
    ts = _timestamp(
        request.headers.get(SLACK_TIMESTAMP), "X-Slack-Request-Timestamp", now, tolerance
    )
    expected = "v0=" + _mac(secret.encode(), f"v0:{ts}:".encode() + request.body).hex()
    if not _same(offered.strip(), expected):
        raise Unauthorized("X-Slack-Signature does not match this request")
    return expected


def _generic(
    spec: WebhookSpec, secret: str, request: WebhookRequest, now: float, tolerance: float
) -> str:
    scheme = spec.auth.hmac
    assert scheme is not None  # the spec's validation makes sure
    offered = request.headers.get(scheme.header.lower())
    if not offered:
        raise Unauthorized(f"the {scheme.header} header is missing")
    ts = None
    if scheme.timestamp_header:
        ts = _timestamp(
            request.headers.get(scheme.timestamp_header.lower()),
            scheme.timestamp_header,
            now,
            tolerance,
        )
    digest = _mac(secret.encode(), signed_message(scheme, request, ts), scheme.algorithm)
    encoded = digest.hex() if scheme.encoding == "hex" else base64.b64encode(digest).decode()
    if not _same(offered.strip(), scheme.prefix + encoded):
        raise Unauthorized(f"{scheme.header} does not match this request")
    return encoded


def signed_message(scheme: HmacScheme, request: WebhookRequest, timestamp: str | None) -> bytes:
    """The bytes a generic HMAC signs: its parts in order, joined by its separator."""
    values: list[bytes] = []
    for part in scheme.parts:
        if part == "body":
            values.append(request.body)
        elif part == "timestamp":
            values.append((timestamp or "").encode())
        elif part == "method":
            values.append(request.method.encode())
        elif part == "path":
            values.append(request.path.encode())
        elif part == "url":
            values.append(request.url.encode())
        else:
            values.append(request.headers.get(part[7:].lower(), "").encode())
    return scheme.separator.encode().join(values)


_SCHEMES = {
    "standard": _standard,
    "github": _github,
    "stripe": _stripe,
    "slack": _slack,
    "hmac": _generic,
}


# -- trigger data ---------------------------------------------------------------------------


def hidden_headers(spec: WebhookSpec) -> frozenset[str]:
    """Headers that carry credentials under ``spec``: kept out of the trigger data."""
    extra = {spec.auth.header.lower()} if spec.auth.mode == "header" else set()
    if spec.auth.hmac is not None:
        extra.add(spec.auth.hmac.header.lower())
    return ALWAYS_HIDDEN | extra


def parse_body(body: bytes, content_type: str) -> Any:
    """JSON, a form (``a=1&b=2``: a dict, repeated names as lists), or text. Invalid JSON
    under a JSON content type is the sender's error (InputError), and so is JSON that
    cannot be stored as sent (1e400, NUL in text, a key twice, nesting past the stack)."""
    kind = content_type.split(";")[0].strip().lower()
    if not body:
        return None
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return load_json(body.decode("utf-8-sig"))  # a byte order mark is allowed
        except (ValueError, TooLarge) as exc:  # UnicodeDecodeError is a ValueError
            raise InputError(f"the body is not valid JSON: {exc}") from None
    text = body.decode("utf-8", errors="replace")
    if kind == "application/x-www-form-urlencoded":
        form: dict[str, Any] = {}
        for name, value in parse_qsl(text, keep_blank_values=True):
            if name in form:
                previous = form[name]
                form[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
            else:
                form[name] = value
        return form
    return text


def trigger_data(spec: WebhookSpec, request: WebhookRequest) -> dict[str, Any]:
    """The execution's input: ``trigger.method``, ``.path``, ``.query``, ``.headers``
    (without credentials), ``.body``, ``.client`` and, with ``keep_raw_body``, ``.raw_body``
    (base64 of the exact bytes, for nodes that verify or forward them)."""
    hidden = hidden_headers(spec)
    data: dict[str, Any] = {
        "method": request.method,
        "path": request.path,
        "query": dict(request.query),
        "headers": {k: v for k, v in request.headers.items() if k not in hidden},
        "body": parse_body(request.body, request.headers.get("content-type", "")),
        "client": request.client,
    }
    if spec.keep_raw_body:
        data["raw_body"] = base64.b64encode(request.body).decode()
    return data


def delivery_id(
    spec: WebhookSpec, request: WebhookRequest, data: dict[str, Any], proof: str | None = None
) -> str | None:
    """The id the sender gives this delivery, or None (then every request starts an
    execution). Only explicit ids: ``dedupe.header``, ``dedupe.template`` (over the trigger
    data), else ``webhook-id`` for the Standard Webhooks scheme, else for another signature
    scheme the signature ``proof`` that :func:`verify` returned: a replay of a signed request
    (past the timestamp window it is refused anyway; a scheme that signs no time is covered
    for as long as delivery ids are kept, 24 h) names the same delivery and starts nothing.
    Never the body alone."""
    dedupe = spec.dedupe
    if dedupe is not None and dedupe.header:
        value = request.headers.get(dedupe.header.lower())
        if not value:
            raise InputError(f"the delivery id header {dedupe.header} is missing")
        return _fit(value)
    if dedupe is not None and dedupe.template:
        try:
            value = render(dedupe.template, {"trigger": data, **data}, "dedupe.template")
        except TemplateProblem as exc:
            raise InputError(f"cannot compute the delivery id: {exc.message}") from None
        if value in (None, ""):
            raise InputError("the delivery id template rendered to nothing")
        return _fit(str(value))
    if spec.auth.mode == "signature" and spec.auth.scheme in SIGNED_ID_HEADERS:
        header = SIGNED_ID_HEADERS[spec.auth.scheme]
        return _fit(request.headers.get(header) or "") or None
    if spec.auth.mode == "signature" and proof:
        return "signature:" + hashlib.sha256(proof.encode()).hexdigest()[:40]
    return None


def _fit(value: str) -> str:
    value = value.strip()
    if len(value) <= MAX_DELIVERY_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def idempotency_key(webhook_id: str, delivery: str) -> str:
    return f"webhook:{webhook_id}:{delivery}"
