"""The credentials page's forms: the inputs a credential type's fields become, the data a
posted form gives, and which field a refusal concerns. Pure: no request, no store.

A secret field's value goes one way only, from the form to the store: it is never put back
into a form (not after a refusal either), so a page can never show one."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor import credentials as kinds

FIELD_PREFIX = "field."
MAX_VALUE = 10_000  # characters in one field (a PEM key or a long URL fits)
_QUOTED = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)'")


@dataclass(frozen=True)
class Input:
    """One form control for one field of a credential type."""

    field: str  # the credential type's field
    name: str  # the form control's name
    id: str
    label: str
    kind: str  # "password", "text", "number" or "select"
    required: bool
    secret: bool
    choices: tuple[str, ...]
    description: str
    value: str  # what the control shows: never a secret field's value


def inputs(type_name: str, shown: Mapping[str, Any]) -> list[Input]:
    """The controls of a credential of ``type_name``; ``shown``: values for its non-secret
    fields (what was typed, or what is stored); defaults fill the rest."""
    spec = kinds.kind(type_name)
    found = []
    for f in spec.fields:
        kind = "password" if f.secret else "select" if f.choices else "text"
        kind = "number" if f.integer else kind
        value = "" if f.secret else shown.get(f.name, f.default)
        found.append(
            Input(
                field=f.name,
                name=FIELD_PREFIX + f.name,
                id=f"field-{f.name}",
                label=f.name.replace("_", " ").capitalize(),
                kind=kind,
                required=f.required,
                secret=f.secret,
                choices=f.choices,
                description=f.description,
                value="" if value is None else str(value),
            )
        )
    return found


def data_of(type_name: str, form: Mapping[str, str]) -> dict[str, Any]:
    """A credential's data from a posted form: each of the type's fields, blank ones left
    out (the store then applies the default or says the field is needed)."""
    data: dict[str, Any] = {}
    for f in kinds.kind(type_name).fields:
        value = form.get(FIELD_PREFIX + f.name, "")
        if value.strip() == "" and not f.secret:
            continue
        if value != "":
            data[f.name] = value if f.secret else value.strip()
    return data


def too_long(form: Mapping[str, str]) -> str | None:
    """The first field over :data:`MAX_VALUE` characters."""
    for key, value in form.items():
        if key.startswith(FIELD_PREFIX) and len(value) > MAX_VALUE:
            return key.removeprefix(FIELD_PREFIX)
    return None


def shown_values(type_name: str, form: Mapping[str, str]) -> dict[str, str]:
    """What a refused form shows again: its non-secret fields as typed."""
    spec = kinds.kind(type_name)
    return {
        f.name: form.get(FIELD_PREFIX + f.name, "")
        for f in spec.fields
        if not f.secret and FIELD_PREFIX + f.name in form
    }


def field_of(type_name: str, message: str) -> str | None:
    """The field a refusal from :func:`conveyor.credentials.check` names (its messages
    quote the field: ``a bearer credential needs 'token'``), or ``None``."""
    names = {f.name for f in kinds.kind(type_name).fields}
    for match in _QUOTED.finditer(message):
        if match.group(1) in names:
            return match.group(1)
    return None


def used_by_words(used_by: list[dict[str, Any]]) -> str:
    """The delete confirmation's clause about where a credential is used."""
    if not used_by:
        return "No workflow uses it."
    names = ", ".join(u["workflow"] for u in used_by)
    noun = "workflow" if len(used_by) == 1 else "workflows"
    return f"It is used by the {noun} {names}: their next steps that need it will fail."
