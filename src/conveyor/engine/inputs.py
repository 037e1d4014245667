"""A workflow's declared input (``input:``, a JSON Schema): the schema checked when a
definition is saved, and an execution's input checked against it when it is enqueued.

Only references inside the schema (``#/...``) are allowed: a remote ``$ref`` would make
enqueueing depend on (and fetch from) another server.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from conveyor.errors import InvalidInput, Problem

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

MAX_PROBLEMS = 50
MAX_MESSAGE = 300


def schema_problems(schema: dict[str, Any]) -> list[Problem]:
    """What makes ``schema`` not a JSON Schema (located under ``input``), or nothing."""
    cls = _validator_class(schema)
    meta = cls(cls.META_SCHEMA)
    problems = [
        Problem(_short(error.message), path=_path(["input", *error.absolute_path]))
        for error in meta.iter_errors(schema)
    ]
    if problems:
        return problems[:MAX_PROBLEMS]
    return list(_reference_problems(schema))


def input_problems(schema: dict[str, Any] | None, value: Any) -> list[Problem]:
    """Each way ``value`` breaks ``schema``, one problem per field, paths under ``input``."""
    if schema is None:
        return []
    from referencing.exceptions import Unresolvable

    validator = _validator_class(schema)(schema)
    try:
        errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path)))
        problems = list(_problems(errors))
    except Unresolvable as exc:
        # Saved before references were checked, or a reference inside a nested resource.
        return [Problem(f"the input schema has a reference that resolves to nothing: {exc.ref}")]
    return problems[:MAX_PROBLEMS]


def check_input(schema: dict[str, Any] | None, value: Any) -> None:
    problems = input_problems(schema, value)
    if problems:
        raise InvalidInput(problems)


def _problems(errors: Iterable[ValidationError]) -> Iterator[Problem]:
    missing: dict[str, None] = {}
    for error in errors:
        if error.validator == "required" and isinstance(error.instance, dict):
            # jsonschema locates a missing property at the object that lacks it: locate it
            # at the property instead, so that a form shows it at its field.
            names = error.validator_value if isinstance(error.validator_value, list) else []
            for name in names:
                if name not in error.instance:
                    missing[_path(["input", *error.absolute_path, name])] = None
            continue
        yield Problem(_short(error.message), path=_path(["input", *error.absolute_path]))
    for path in missing:
        yield Problem("a value is required", path=path)


def _reference_problems(schema: Any) -> Iterator[Problem]:
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    resolver = Registry().resolver_with_root(DRAFT202012.create_resource(schema))
    for path, ref in _references(schema, ["input"]):
        if not ref.startswith("#"):
            yield Problem(
                "only references inside the schema ('#/...') are allowed", path=_path(path)
            )
            continue
        try:
            resolver.lookup(ref)
        except Unresolvable:
            yield Problem(f"'{ref}' points to nothing in this schema", path=_path(path))


def _references(value: Any, path: list[Any]) -> Iterator[tuple[list[Any], str]]:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str):
            yield [*path, "$ref"], ref
        for key, inner in value.items():
            yield from _references(inner, [*path, key])
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _references(inner, [*path, index])


def _validator_class(schema: dict[str, Any]) -> type[Validator]:
    """The draft ``$schema`` names; 2020-12 when it names none (or one we do not know)."""
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    found: type[Validator] = validator_for(schema, default=Draft202012Validator)
    return found


def _path(parts: Iterable[Any]) -> str:
    """``input.items[0].name``: the notation of every other problem path."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(message: str) -> str:
    """jsonschema quotes the offending value, which may be megabytes of input."""
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
