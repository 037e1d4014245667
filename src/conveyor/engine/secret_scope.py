"""The credentials one execution may use, and the redaction of their values.

An execution that names no credential never loads any (no query, no decryption). One that
does (a ``credential:`` in a config, ``secrets.X`` in a template, or node code calling
``ctx.credential``) loads its workspace's credentials once per run and decrypts them in
the worker. From then on everything the runner stores or streams for that execution (step
inputs, outputs, errors, logs, events, live messages) goes through ``redact`` first, so
a secret value never reaches the database, even when a node echoes it back or a template
embeds it in a longer string. What the node itself receives is not redacted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor import credentials as kinds
from conveyor.engine.templates import mentions_name
from conveyor.errors import NodeError
from conveyor.nodes.base import Credential
from conveyor.redaction import KNOWN, SECRET_MARKER, Redactor

Loader = Callable[[], Awaitable[list[Credential]]]


class SecretScope:
    """The ``ctx.credentials`` of every step of one execution run."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self._lock = asyncio.Lock()
        self._found: dict[str, Credential] | None = None
        self._error: str | None = None
        self.redact = Redactor((), SECRET_MARKER)

    @property
    def loaded(self) -> bool:
        return self._found is not None

    async def load(self) -> None:
        async with self._lock:
            if self._found is not None:
                return
            try:
                found = await self._loader()
            except NodeError as exc:
                self._error = str(exc)
                found = []
            values = [v for c in found for v in kinds.secret_values(c.type, c.data)]
            KNOWN.add(values)
            self.redact = Redactor(values, SECRET_MARKER, kinds.MIN_SECRET_LENGTH)
            self._found = {c.name: c for c in found}

    async def get(self, name: str) -> Credential:
        await self.load()
        assert self._found is not None
        if self._error is not None:
            raise NodeError(self._error, non_retryable=True)
        found = self._found.get(name)
        if found is None:
            raise NodeError(
                f"credential '{name}' does not exist in this workspace "
                "(create it with `conveyor credentials set` or on the Credentials page)",
                non_retryable=True,
            )
        return found

    def template_values(self) -> dict[str, str]:
        """``secrets`` as templates see it: each credential's main secret by name."""
        return {name: kinds.main_secret(c.type, c.data) for name, c in (self._found or {}).items()}

    def scrub(self, value: Any) -> Any:
        return self.redact.deep(value)


def uses_credentials(definition: Any) -> bool:
    """Whether a (stored) definition names a credential anywhere in its node configs."""
    for node in definition.nodes:
        if _names_credential(node.config) or mentions_name(node.config, "secrets"):
            return True
    return False


def _names_credential(value: Any) -> bool:
    if isinstance(value, dict):
        return "credential" in value or any(_names_credential(v) for v in value.values())
    if isinstance(value, list):
        return any(_names_credential(v) for v in value)
    return False
