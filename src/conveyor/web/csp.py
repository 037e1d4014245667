"""The pages' Content-Security-Policy: nothing inline, nothing from elsewhere (elkjs lays
graphs out without a worker, Chart.js draws on canvas: 'self' is enough); a page that
must allow injected ``<style>`` elements (CodeMirror) names them with a per-response nonce."""

from __future__ import annotations

import secrets

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def with_style_nonce(nonce: str) -> str:
    """The policy, also allowing ``<style nonce=...>`` elements carrying ``nonce`` (scripts
    stay 'self' only)."""
    return CSP.replace("style-src 'self'", f"style-src 'self' 'nonce-{nonce}'")
