"""Redaction: values that must not appear in stored error text are replaced by a marker.

Today the values are a step's rendered config strings (what templates put there: input,
earlier outputs); the credentials store will hand its secrets to the same ``Redactor`` so
every error text goes through one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MARKER = "[redacted]"
# Shorter strings ("GET", "json", "true") are everywhere in a traceback and rarely secret.
MIN_LENGTH = 6


def strings_in(value: Any) -> list[str]:
    """Every string inside ``value`` (dict values and list items, recursively)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_in(v)]
    return []


class Redactor:
    """Replaces each of ``values`` (at least ``MIN_LENGTH`` characters) in a text."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        # Longest first, so a value containing another is replaced whole.
        self.values = sorted({v for v in values if len(v) >= MIN_LENGTH}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, MARKER)
        return text
