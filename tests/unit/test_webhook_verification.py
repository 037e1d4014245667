"""Webhook verification and trigger data (triggers/webhooks.py): pure, with the vectors the
providers publish (Standard Webhooks, GitHub, Slack) and signatures made by the
``standardwebhooks`` package."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook

from conveyor.engine.triggers import WebhookSpec
from conveyor.errors import InputError, Unauthorized
from conveyor.triggers.webhooks import (
    WebhookRequest,
    delivery_id,
    trigger_data,
    verify,
)


def spec(**auth: Any) -> WebhookSpec:
    return WebhookSpec.model_validate({"id": "hook", "auth": auth})


def request(body: bytes, headers: dict[str, str], method: str = "POST") -> WebhookRequest:
    return WebhookRequest(
        method=method,
        path="/hooks/t",
        url="http://x/hooks/t",
        query=[("a", "1")],
        headers={k.lower(): v for k, v in headers.items()},
        body=body,
        client="127.0.0.1",
    )


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# Standard Webhooks' own test vector (svix / standard-webhooks libraries).
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TS = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def sw_headers(signature: str = SW_SIG, ts: int = SW_TS) -> dict[str, str]:
    return {"webhook-id": SW_ID, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_standard_vector_verifies_and_tampering_is_refused() -> None:
    verify(spec(), SW_SECRET, request(SW_BODY, sw_headers()), at(SW_TS + 10))
    # Several signatures (rotation): one valid one suffices.
    verify(spec(), SW_SECRET, request(SW_BODY, sw_headers(f"v1,bogus {SW_SIG}")), at(SW_TS))
    with pytest.raises(Unauthorized, match="no webhook-signature matches"):
        verify(spec(), SW_SECRET, request(SW_BODY + b" ", sw_headers()), at(SW_TS))
    with pytest.raises(Unauthorized, match="replay window"):
        verify(spec(), SW_SECRET, request(SW_BODY, sw_headers()), at(SW_TS + 301))
    with pytest.raises(Unauthorized, match="missing"):
        verify(spec(), SW_SECRET, request(SW_BODY, {}), at(SW_TS))


def test_a_signature_made_by_the_standardwebhooks_package_verifies() -> None:
    now = datetime.now(UTC)
    signature = Webhook(SW_SECRET).sign(SW_ID, now, SW_BODY.decode())
    headers = {"webhook-id": SW_ID, "webhook-timestamp": str(int(now.timestamp()))}
    verify(spec(), SW_SECRET, request(SW_BODY, {**headers, "webhook-signature": signature}), now)


def test_github_vector() -> None:
    secret = "It's a Secret to Everybody"
    good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    hook = spec(scheme="github")
    verify(hook, secret, request(b"Hello, World!", {"X-Hub-Signature-256": good}), at(0))
    with pytest.raises(Unauthorized):
        verify(hook, secret, request(b"Hello, World?", {"X-Hub-Signature-256": good}), at(0))


SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
    b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977"
    b"00885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d"
    b"10d2c447fce8b6703c"
)


def test_slack_vector_and_its_replay_window() -> None:
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    headers = {
        "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        "X-Slack-Request-Timestamp": "1531420618",
    }
    hook = spec(scheme="slack")
    verify(hook, secret, request(SLACK_BODY, headers), at(1531420618 + 60))
    with pytest.raises(Unauthorized, match="replay window"):
        verify(hook, secret, request(SLACK_BODY, headers), at(1531420618 + 3600))
    data = trigger_data(hook, request(SLACK_BODY, {**headers, "content-type": FORM}))
    assert data["body"]["user_name"] == "roadrunner"
    assert "x-slack-signature" not in data["headers"]


FORM = "application/x-www-form-urlencoded"


def stripe_header(secret: str, ts: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest},v0=ignored"


def test_stripe_scheme() -> None:
    secret = "whsec_test_secret"
    body = b'{"id": "evt_1"}'
    hook = spec(scheme="stripe")
    verify(
        hook, secret, request(body, {"Stripe-Signature": stripe_header(secret, 100, body)}), at(100)
    )
    with pytest.raises(Unauthorized, match="replay window"):
        header = stripe_header(secret, 100, body)
        verify(hook, secret, request(body, {"Stripe-Signature": header}), at(1000))
    with pytest.raises(Unauthorized):
        header = stripe_header("whsec_other", 100, body)
        verify(hook, secret, request(body, {"Stripe-Signature": header}), at(100))


def test_generic_hmac_over_chosen_parts() -> None:
    hook = spec(
        scheme="hmac",
        hmac={
            "header": "X-Sig",
            "algorithm": "sha1",
            "encoding": "base64",
            "prefix": "sha1=",
            "parts": ["timestamp", "method", "body"],
            "separator": "|",
            "timestamp_header": "X-Ts",
        },
    )
    body = b"payload"
    digest = hmac.new(b"s3cret-value", b"50|POST|payload", hashlib.sha1).digest()
    headers = {"X-Sig": "sha1=" + base64.b64encode(digest).decode(), "X-Ts": "50"}
    verify(hook, "s3cret-value", request(body, headers), at(60))
    with pytest.raises(Unauthorized):
        verify(hook, "s3cret-value", request(body, headers, method="PUT"), at(60))
    assert "x-sig" not in trigger_data(hook, request(body, headers))["headers"]


def test_header_token_and_basic() -> None:
    token = spec(mode="header", header="X-Token")
    verify(token, "tok-123456", request(b"", {"X-Token": "tok-123456"}), at(0))
    with pytest.raises(Unauthorized):
        verify(token, "tok-123456", request(b"", {"X-Token": "tok-1234567"}), at(0))
    bearer = spec(mode="header")
    verify(bearer, "tok-123456", request(b"", {"Authorization": "Bearer tok-123456"}), at(0))
    basic = spec(mode="basic", username="ci")
    good = "Basic " + base64.b64encode(b"ci:pw-secret").decode()
    verify(basic, "pw-secret", request(b"", {"Authorization": good}), at(0))
    for bad in ("Basic " + base64.b64encode(b"cd:pw-secret").decode(), "Basic !!", None):
        with pytest.raises(Unauthorized):
            verify(basic, "pw-secret", request(b"", {"Authorization": bad} if bad else {}), at(0))
    verify(spec(mode="none"), None, request(b"", {}), at(0))


def test_trigger_data_and_delivery_ids() -> None:
    hook = WebhookSpec.model_validate(
        {
            "id": "h",
            "auth": {"mode": "none"},
            "keep_raw_body": True,
            "dedupe": {"template": "s:{{ body.event_id }}"},
        }
    )
    incoming = request(b'{"event_id": "E1"}', {"content-type": "application/json", "Cookie": "c"})
    data = trigger_data(hook, incoming)
    assert data["body"] == {"event_id": "E1"} and data["query"] == {"a": "1"}
    assert data["raw_body"] == base64.b64encode(b'{"event_id": "E1"}').decode()
    assert "cookie" not in data["headers"]
    assert delivery_id(hook, incoming, data) == "s:E1"
    by_header = WebhookSpec.model_validate(
        {"id": "h", "auth": {"mode": "none"}, "dedupe": {"header": "X-GitHub-Delivery"}}
    )
    with pytest.raises(InputError, match="X-GitHub-Delivery"):
        delivery_id(by_header, incoming, data)
    # No explicit id: no dedupe (never a key made from the body).
    assert delivery_id(spec(mode="none"), incoming, data) is None
    assert delivery_id(spec(), request(b"", sw_headers()), data) == SW_ID
    # GitHub signs no delivery id: its unsigned header is not one (a replay could change it).
    github = request(b"", {"X-GitHub-Delivery": "72d3162e"})
    assert delivery_id(spec(scheme="github"), github, data) is None
    with pytest.raises(InputError, match="JSON"):
        trigger_data(hook, request(b"{", {"content-type": "application/json"}))


def test_a_replayed_signature_names_the_same_delivery_whatever_else_changed() -> None:
    """Schemes that sign no id: the verified signature is the delivery id, so a captured
    request sent again (even with extra signatures or another unsigned id header appended)
    dedupes to the first execution; a fresh signature (a new timestamp) is a new delivery."""
    secret = "whsec_test_secret"
    body = b'{"id": "evt_1"}'
    stripe = spec(scheme="stripe")
    first = request(body, {"Stripe-Signature": stripe_header(secret, 100, body)})
    padded = stripe_header(secret, 100, body) + ",v1=" + "0" * 64
    replay = request(body, {"Stripe-Signature": padded, "X-Request-Id": "new"})
    ids = [delivery_id(stripe, r, {}, verify(stripe, secret, r, at(100))) for r in (first, replay)]
    assert ids[0] is not None and ids[0].startswith("signature:") and ids[0] == ids[1]
    later = request(body, {"Stripe-Signature": stripe_header(secret, 101, body)})
    assert delivery_id(stripe, later, {}, verify(stripe, secret, later, at(101))) != ids[0]
    github = spec(scheme="github")
    good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    signed = [
        request(b"Hello, World!", {"X-Hub-Signature-256": good, "X-GitHub-Delivery": d})
        for d in ("a", "b")
    ]
    secret = "It's a Secret to Everybody"
    proofs = [verify(github, secret, r, at(0)) for r in signed]
    assert len({delivery_id(github, r, {}, p) for r, p in zip(signed, proofs, strict=True)}) == 1
    # An explicit dedupe setting still wins; unsigned modes have no proof.
    chosen = WebhookSpec.model_validate(
        {
            "id": "h",
            "auth": {"mode": "signature", "scheme": "github"},
            "dedupe": {"header": "X-GitHub-Delivery"},
        }
    )
    assert delivery_id(chosen, signed[1], {}, proofs[1]) == "b"
    assert verify(spec(mode="none"), None, signed[0], at(0)) is None


def test_tolerance_is_configurable() -> None:
    hook = spec(tolerance="10s")
    assert hook.auth.tolerance == timedelta(seconds=10)
    with pytest.raises(Unauthorized):
        verify(hook, SW_SECRET, request(SW_BODY, sw_headers()), at(SW_TS + 11))


def test_a_sync_answer_names_a_node_of_the_workflow_at_save() -> None:
    from conveyor.engine.validation import validate
    from conveyor.errors import DefinitionError
    from conveyor.nodes.builtin import build_registry

    definition = {
        "name": "w",
        "nodes": [{"id": "a", "type": "transform", "config": {"output": {}}}],
        "triggers": [{"type": "webhook", "id": "h", "response": {"mode": "sync", "node": "b"}}],
    }
    with pytest.raises(DefinitionError, match="node 'b'"):
        validate(definition, build_registry())
    definition["triggers"][0]["response"]["node"] = "a"  # type: ignore[index]
    validate(definition, build_registry())
