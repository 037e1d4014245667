"""Redaction: values that must not appear in stored text are replaced by a marker.

Two uses. A step's rendered config strings (what templates put there: input, earlier
outputs) are kept out of an unexpected error's message and traceback (``MARKER``). A
credential's secret values are kept out of everything an execution stores or streams
(``SECRET_MARKER``, see ``engine/secret_scope.py``), and out of this process's log lines
(``LogFilter``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, cast

MARKER = "[redacted]"
SECRET_MARKER = "***"  # noqa: S105 (the marker, not a password)
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

    def __init__(
        self, values: Iterable[str] = (), marker: str = MARKER, min_length: int = MIN_LENGTH
    ) -> None:
        # Longest first, so a value containing another is replaced whole.
        self.values = sorted({v for v in values if len(v) >= min_length}, key=len, reverse=True)
        self.marker = marker

    def __bool__(self) -> bool:
        return bool(self.values)

    def __call__(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, self.marker)
        return text

    def deep(self, value: Any) -> Any:
        """``value`` with every string inside it (keys too) redacted; a new structure, the
        original is left as it was."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {(self(k) if isinstance(k, str) else k): self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value


class _Known:
    """The secret values this process has decrypted, for its log lines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self.redactor = Redactor((), SECRET_MARKER)

    def add(self, values: Iterable[str]) -> None:
        new = set(values) - self._values
        if not new:
            return
        with self._lock:
            self._values |= new
            self.redactor = Redactor(self._values, SECRET_MARKER, 1)


KNOWN = _Known()


class LogFilter(logging.Filter):
    """Replaces every secret this process has decrypted in a log record's text (message,
    arguments and the formatted traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact = KNOWN.redactor
        if not redact:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_filter() -> None:
    """Add the filter to every handler of the root logger (and of uvicorn's loggers), so
    whatever formats a record sees it redacted."""
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, LogFilter) for f in handler.filters):
                handler.addFilter(cast(logging.Filter, LogFilter()))
