"""The LLM price table: read from JSON text or a file, looked up by model, turned into cost."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import InputError
from conveyor.nodes.llm_prices import Price, cost, load_prices, price_of

TABLE = (
    '{"gpt-4o": {"input": 2.5, "output": 10, "cached": 1.25}, '
    '"gpt-4o-mini": {"input": 0.15, "output": 0.6}}'
)


def test_a_table_from_text_or_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(TABLE)
    expected = {
        "gpt-4o": Price(2.5, 10.0, 1.25),
        "gpt-4o-mini": Price(0.15, 0.6, None),
    }
    assert load_prices(TABLE) == expected
    assert load_prices(str(path)) == expected
    assert load_prices(None) == load_prices("") == {}


@pytest.mark.parametrize("bad", ['{"m": {"input": 1}}', '{"m": 3}', "{not json", "/no/such/file"])
def test_a_malformed_table_names_the_setting(bad: str) -> None:
    with pytest.raises(InputError, match="CONVEYOR_LLM_PRICES"):
        load_prices(bad)


def test_lookup_by_exact_name_then_longest_prefix() -> None:
    table = load_prices(TABLE)
    assert price_of(table, "gpt-4o-mini") == table["gpt-4o-mini"]
    assert price_of(table, "gpt-4o-mini-2024-07-18") == table["gpt-4o-mini"]
    assert price_of(table, "gpt-4o-2024-08-06") == table["gpt-4o"]
    assert price_of(table, "dated-answer", "gpt-4o") == table["gpt-4o"]
    assert price_of(table, "claude-3") is None


def test_cached_tokens_are_charged_at_the_cached_price() -> None:
    assert cost(Price(2.0, 10.0, 0.5), 1_000_000, 0, 1_000_000) == 0.5
    assert cost(Price(2.0, 10.0), 1_000, 100, 400) == pytest.approx(0.003)
