"""How long a SQLite write waits for another process's write lock: the URL's ``timeout``."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from conveyor.errors import InputError
from conveyor.store.sqlite import BUSY_TIMEOUT_MS, busy_timeout_ms


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///c.db", BUSY_TIMEOUT_MS),
        ("sqlite:///c.db?timeout=2", 2000),
        ("sqlite:///c.db?timeout=0.5", 500),
        ("sqlite:///c.db?timeout=1&timeout=3", 3000),
    ],
)
def test_the_busy_timeout_comes_from_the_url(url: str, expected: int) -> None:
    assert busy_timeout_ms(make_url(url)) == expected


@pytest.mark.parametrize("value", ["soon", "-1", "7200"])
def test_a_bad_busy_timeout_is_refused_in_one_line(value: str) -> None:
    with pytest.raises(InputError, match="timeout="):
        busy_timeout_ms(make_url(f"sqlite:///c.db?timeout={value}"))
