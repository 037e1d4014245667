"""Credential types: the fields each one has, which of them are secret, and every form in
which a secret value could show up in a step's data (so redaction finds it there too).

A credential is stored per workspace under a name, its fields encrypted together
(``conveyor.secrets``); the non-secret fields (a host, a user name, a header's name) are
also kept in clear so they can be listed. Nodes use a credential by name (``credential:
slack-prod``) or in a template (``{{ secrets.NAME }}``, the credential's main secret).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

from conveyor.errors import InputError

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)
# A secret shorter than this would be "redacted" out of ordinary text everywhere it
# occurs; such values are refused instead.
MIN_SECRET_LENGTH = 4


@dataclass(frozen=True)
class Field:
    name: str
    secret: bool = False
    required: bool = True
    default: Any = None
    choices: tuple[str, ...] = ()
    integer: bool = False
    description: str = ""


@dataclass(frozen=True)
class CredentialType:
    name: str
    title: str
    fields: tuple[Field, ...]
    main: str  # the secret field ``{{ secrets.NAME }}`` stands for
    description: str = ""

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


TYPES: dict[str, CredentialType] = {
    t.name: t
    for t in (
        CredentialType(
            "bearer",
            "Bearer token",
            (Field("token", secret=True, description="sent as 'Authorization: Bearer <token>'"),),
            "token",
        ),
        CredentialType(
            "basic",
            "Basic auth",
            (Field("username"), Field("password", secret=True)),
            "password",
        ),
        CredentialType(
            "header",
            "Header",
            (
                Field("name", description="the header's name, e.g. X-API-Key"),
                Field("value", secret=True),
            ),
            "value",
        ),
        CredentialType(
            "query",
            "Query parameter",
            (
                Field("name", description="the parameter's name, e.g. api_key"),
                Field("value", secret=True),
            ),
            "value",
        ),
        CredentialType(
            "smtp",
            "SMTP account",
            (
                Field("host"),
                Field("port", required=False, default=587, integer=True),
                Field("username", required=False, default=""),
                Field("password", secret=True, required=False, default=""),
                Field(
                    "security",
                    required=False,
                    default="starttls",
                    choices=("starttls", "tls", "none"),
                ),
                Field("sender", required=False, default="", description="the From address"),
            ),
            "password",
        ),
        CredentialType(
            "database",
            "Database URL",
            (
                Field(
                    "url",
                    secret=True,
                    description="postgresql://, mysql:// (MariaDB too) or sqlite:///path",
                ),
            ),
            "url",
        ),
        CredentialType(
            "llm",
            "LLM provider key",
            (
                Field(
                    "provider", required=False, default="openai", choices=("openai", "anthropic")
                ),
                Field("api_key", secret=True),
                Field(
                    "base_url",
                    required=False,
                    default="",
                    description="any OpenAI-compatible endpoint; empty: the provider's own",
                ),
            ),
            "api_key",
        ),
        CredentialType(
            "webhook_secret",
            "Webhook signing secret",
            (Field("secret", secret=True),),
            "secret",
        ),
    )
}


def check_name(name: str) -> str:
    # fullmatch: with match, '$' also matches before a trailing newline ("a\n").
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(
            f"credential name {name!r} is not valid: use letters, digits, '_' and '-', "
            "starting with a letter (at most 100 characters)"
        )
    return name


def kind(type_name: str) -> CredentialType:
    found = TYPES.get(type_name)
    if found is None:
        raise InputError(f"unknown credential type {type_name!r}; known types: {', '.join(TYPES)}")
    return found


def check(type_name: str, data: Any) -> dict[str, Any]:
    """The fields of a credential of ``type_name``, checked and with defaults filled in."""
    spec = kind(type_name)
    if not isinstance(data, dict):
        raise InputError("a credential's data must be an object of its fields")
    unknown = sorted(set(data) - {f.name for f in spec.fields})
    if unknown:
        raise InputError(
            f"unknown field(s) for a {type_name} credential: {', '.join(unknown)} "
            f"(its fields: {', '.join(f.name for f in spec.fields)})"
        )
    checked: dict[str, Any] = {}
    for f in spec.fields:
        value = data.get(f.name)
        if value is None or value == "":
            if f.required:
                raise InputError(f"a {type_name} credential needs '{f.name}'")
            checked[f.name] = f.default
            continue
        if f.integer:
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise InputError(f"'{f.name}' must be an integer") from None
        elif not isinstance(value, str):
            raise InputError(f"'{f.name}' must be a string")
        if f.choices and value not in f.choices:
            raise InputError(f"'{f.name}' must be one of: {', '.join(f.choices)}")
        if f.secret and len(str(value)) < MIN_SECRET_LENGTH:
            raise InputError(
                f"'{f.name}' is shorter than {MIN_SECRET_LENGTH} characters: too short to "
                "be kept out of stored data reliably"
            )
        checked[f.name] = value
    return checked


def public(type_name: str, data: dict[str, Any]) -> dict[str, Any]:
    """The fields that may be shown (never a secret one)."""
    spec = kind(type_name)
    return {f.name: data.get(f.name) for f in spec.fields if not f.secret}


def secret_fields(type_name: str) -> list[str]:
    return [f.name for f in kind(type_name).fields if f.secret]


def main_secret(type_name: str, data: dict[str, Any]) -> str:
    return str(data.get(kind(type_name).main) or "")


def secret_values(type_name: str, data: dict[str, Any]) -> list[str]:
    """Every string that would give a secret away: each secret field as stored, URL-encoded,
    in Basic auth's base64 form, and a URL's password on its own."""
    found: list[str] = []
    for name in secret_fields(type_name):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            continue
        found += [value, quote(value, safe=""), quote_plus(value)]
        if "://" in value:
            password = urlsplit(value).password
            if password:
                found += [password, unquote(password)]
    if type_name == "basic":
        pair = f"{data.get('username', '')}:{data.get('password', '')}"
        found.append(base64.b64encode(pair.encode()).decode())
    return [v for v in dict.fromkeys(found) if len(v) >= MIN_SECRET_LENGTH]
