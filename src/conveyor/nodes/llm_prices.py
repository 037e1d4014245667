"""The optional LLM price table: what a model's tokens cost, per million input, output and
cached input tokens (``CONVEYOR_LLM_PRICES``: JSON text, or the path of a JSON file)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import InputError


@dataclass(frozen=True)
class Price:
    """Money per million tokens; ``cached`` defaults to ``input`` (no cache discount)."""

    input: float
    output: float
    cached: float | None = None


PriceTable = dict[str, Price]


def load_prices(source: str | None) -> PriceTable:
    """``{"gpt-4o": {"input": 2.5, "output": 10, "cached": 1.25}, ...}`` from JSON text or
    a file holding it; empty for None or ''. A malformed table is an InputError."""
    if not source or not source.strip():
        return {}
    text = source
    if not source.lstrip().startswith("{"):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"CONVEYOR_LLM_PRICES: cannot read {source}: {exc}") from exc
    try:
        data: Any = json.loads(text)
        return {
            str(model): Price(
                input=float(p["input"]),
                output=float(p["output"]),
                cached=float(p["cached"]) if p.get("cached") is not None else None,
            )
            for model, p in data.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InputError(
            "CONVEYOR_LLM_PRICES: expected {model: {input, output, cached?}} with prices per "
            f"million tokens: {exc!r}"
        ) from exc


def price_of(table: PriceTable, *models: str) -> Price | None:
    """The price of the first model found by exact name, else the longest table key that
    is a prefix of one (``gpt-4o`` prices ``gpt-4o-2024-08-06``)."""
    for model in models:
        if model in table:
            return table[model]
    for model in models:
        prefixes = [key for key in table if model.startswith(key)]
        if prefixes:
            return table[max(prefixes, key=len)]
    return None


def cost(price: Price, input_tokens: int, output_tokens: int, cached_tokens: int) -> float:
    """Cached tokens are part of ``input_tokens`` and are charged at the cached price."""
    cached_price = price.cached if price.cached is not None else price.input
    fresh = max(input_tokens - cached_tokens, 0)
    total = fresh * price.input + cached_tokens * cached_price + output_tokens * price.output
    return round(total / 1_000_000, 8)
