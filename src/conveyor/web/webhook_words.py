"""A webhook's auth mode in words and how to send it a test request, for the Triggers tab.

The dashboard never holds a webhook's secret (it is shown once, when created), so the test
helper sends a request itself only when no secret is needed (auth ``none``) or when the
person types the secret into the form (``header``, ``basic``: it stays in the page and goes
only to the hook URL). A signature must be computed over the exact bytes sent, with the
secret: for those the tab shows a shell snippet (curl + openssl) that signs and sends."""

from __future__ import annotations

import shlex
from typing import Any

SCHEMES = {
    "standard": "Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)",
    "github": "GitHub (X-Hub-Signature-256)",
    "stripe": "Stripe (Stripe-Signature)",
    "slack": "Slack (X-Slack-Signature)",
    "hmac": "HMAC",
}
SAMPLE_BODY = '{"hello": "world"}'


def auth_words(auth: dict[str, Any]) -> str:
    mode = auth.get("mode", "signature")
    if mode == "none":
        return "None (no authentication)"
    if mode == "header":
        return f"Secret token in the {auth.get('header') or 'Authorization'} header"
    if mode == "basic":
        return f"HTTP basic, user {auth.get('username')}"
    scheme = auth.get("scheme", "standard")
    words = f"Signature: {SCHEMES.get(scheme, scheme)}"
    hmac = auth.get("hmac") or {}
    if scheme == "hmac" and hmac:
        words += (
            f" in {hmac.get('header')}, {hmac.get('algorithm', 'sha256')} "
            f"{hmac.get('encoding', 'hex')} of {' + '.join(hmac.get('parts', ['body']))}"
        )
    return words


def sending_mode(auth: dict[str, Any]) -> str:
    """``direct`` (no secret), ``secret`` (typed into the form) or ``snippet`` (signed)."""
    mode = auth.get("mode", "signature")
    return {"none": "direct", "header": "secret", "basic": "secret"}.get(mode, "snippet")


_SIGNERS = {
    # scheme: (signed text as a printf format over TS and BODY, header lines)
    "github": ("'%s' \"$BODY\"", ["X-Hub-Signature-256: sha256=$SIG"]),
    "stripe": ('\'%s.%s\' "$TS" "$BODY"', ["Stripe-Signature: t=$TS,v1=$SIG"]),
    "slack": (
        '\'v0:%s:%s\' "$TS" "$BODY"',
        ["X-Slack-Request-Timestamp: $TS", "X-Slack-Signature: v0=$SIG"],
    ),
}


def _curl(url: str, method: str, headers: list[str]) -> str:
    lines = [f"curl -i -X {method} {shlex.quote(url)}", "  -H 'Content-Type: application/json'"]
    lines += [f'  -H "{h}"' for h in headers]
    lines.append('  --data-binary "$BODY"')
    return " \\\n".join(lines)


def signed_snippet(url: str, method: str, auth: dict[str, Any]) -> str | None:
    """A shell snippet that signs a JSON body as the webhook's scheme wants and sends it;
    None for a generic HMAC over more than the body (its parts vary too much)."""
    scheme = auth.get("scheme", "standard")
    head = [
        "SECRET='…'  # the secret shown once when the webhook was created",
        f"BODY={shlex.quote(SAMPLE_BODY)}",
    ]
    if scheme != "github" and (
        scheme != "hmac" or (auth.get("hmac") or {}).get("timestamp_header")
    ):
        head.append("TS=$(date +%s)")
    if scheme == "standard":
        head += [
            'ID="msg_$(date +%s%N)"',
            "KEY=$(printf %s \"${SECRET#whsec_}\" | base64 -d | od -An -tx1 | tr -d ' \\n')",
            'SIG=$(printf \'%s.%s.%s\' "$ID" "$TS" "$BODY" '
            "| openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY -binary | base64)",
        ]
        headers = ["webhook-id: $ID", "webhook-timestamp: $TS", "webhook-signature: v1,$SIG"]
    elif scheme in _SIGNERS:
        signed, headers = _SIGNERS[scheme]
        head.append(
            f"SIG=$(printf {signed} | openssl dgst -sha256 -hmac \"$SECRET\" | sed 's/^.* //')"
        )
    else:
        hmac = auth.get("hmac") or {}
        if hmac.get("parts", ["body"]) != ["body"]:
            return None
        digest = hmac.get("algorithm", "sha256")
        encode = "-binary | base64" if hmac.get("encoding") == "base64" else "| sed 's/^.* //'"
        head.append(f'SIG=$(printf %s "$BODY" | openssl dgst -{digest} -hmac "$SECRET" {encode})')
        headers = [f"{hmac.get('header')}: {hmac.get('prefix', '')}$SIG"]
    return "\n".join(head) + "\n" + _curl(url, method, headers)


def webhook_view(spec: dict[str, Any], url: str) -> dict[str, Any]:
    """What the tab shows about one webhook's spec."""
    auth = spec.get("auth") or {}
    methods = spec.get("methods") or ["POST"]
    method = "POST" if "POST" in methods else methods[0]
    mode = sending_mode(auth)
    return {
        "methods": methods,
        "test_method": method,
        "auth_mode": auth.get("mode", "signature"),
        "auth_words": auth_words(auth),
        "auth_header": auth.get("header") or "Authorization",
        "auth_username": auth.get("username"),
        "test_mode": mode,
        "snippet": signed_snippet(url, method, auth) if mode == "snippet" else None,
        "response_mode": (spec.get("response") or {}).get("mode", "async"),
        "dedupe": spec.get("dedupe"),
        "sample_body": SAMPLE_BODY,
    }
