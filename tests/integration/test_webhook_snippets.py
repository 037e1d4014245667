"""The Triggers tab's test commands sign what they send: each scheme's shell snippet, run by
bash with openssl (curl replaced by a function that prints its arguments), gives the headers
an independent HMAC computed here expects."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import subprocess

import pytest

from conveyor.web.webhook_words import SAMPLE_BODY, signed_snippet

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
PRINT_CURL = 'curl() { printf "%s\\n" "$@"; }\n'


def sent_headers(scheme: str, hmac_spec: dict[str, object] | None = None) -> dict[str, str]:
    auth = {"mode": "signature", "scheme": scheme, "hmac": hmac_spec}
    snippet = signed_snippet("http://127.0.0.1:1/hooks/t", "POST", auth)
    assert snippet is not None
    script = PRINT_CURL + snippet.replace("SECRET='…'", f"SECRET='{SECRET}'")
    if not (shutil.which("bash") and shutil.which("openssl")):
        pytest.skip("bash and openssl are needed to run the snippets")
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, timeout=30
    ).stdout.splitlines()
    assert out[out.index("--data-binary") + 1] == SAMPLE_BODY
    pairs = [out[i + 1].partition(": ") for i, arg in enumerate(out) if arg == "-H"]
    return {name.lower(): value for name, _, value in pairs}


def mac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def test_standard_webhooks() -> None:
    headers = sent_headers("standard")
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{SAMPLE_BODY}"
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac(key, signed)).decode()


def test_github_stripe_and_slack() -> None:
    key = SECRET.encode()
    github = sent_headers("github")
    assert github["x-hub-signature-256"] == "sha256=" + mac(key, SAMPLE_BODY).hex()
    stripe = sent_headers("stripe")
    stamp, _, signature = stripe["stripe-signature"].partition(",")
    assert signature == "v1=" + mac(key, f"{stamp[2:]}.{SAMPLE_BODY}").hex()
    slack = sent_headers("slack")
    signed = f"v0:{slack['x-slack-request-timestamp']}:{SAMPLE_BODY}"
    assert slack["x-slack-signature"] == "v0=" + mac(key, signed).hex()


def test_generic_hmac_of_the_body() -> None:
    spec = {"header": "X-Sig", "algorithm": "sha1", "encoding": "base64", "prefix": "sha1="}
    headers = sent_headers("hmac", spec)
    digest = hmac.new(SECRET.encode(), SAMPLE_BODY.encode(), hashlib.sha1).digest()
    assert headers["x-sig"] == "sha1=" + base64.b64encode(digest).decode()
