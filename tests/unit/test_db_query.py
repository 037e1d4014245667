"""db.query without a database: credential URLs, column values as JSON, and the literal SQL
field (the catalog's mark, validation's refusal of a template in it)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from conveyor.engine.templates import reads_variables
from conveyor.engine.validation import check
from conveyor.errors import NodeError
from conveyor.nodes.builtin import build_registry
from conveyor.nodes.catalog import describe, literal_fields
from conveyor.nodes.database import DbQuery, DbQueryConfig, json_value, parse_url


def test_server_urls_are_parsed_with_escapes() -> None:
    target = parse_url("postgresql://app%40x:p%2Fw@db.example.com:6543/shop?sslmode=require", "c")
    assert (target.kind, target.host, target.port) == ("postgresql", "db.example.com", 6543)
    assert (target.user, target.password, target.database) == ("app@x", "p/w", "shop")
    assert target.options == {"sslmode": "require"}
    assert parse_url("mariadb://u:p@[::1]/d", "c").kind == "mysql"
    assert parse_url("mariadb://u:p@[::1]/d", "c").host == "::1"
    assert parse_url("postgres://h/d", "c").port == 0


def test_sqlite_urls_follow_sqlalchemy() -> None:
    assert parse_url("sqlite:///data/app.db", "c").path == "data/app.db"
    assert parse_url("sqlite:////var/lib/app.db", "c").path == "/var/lib/app.db"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (None, "must look like"),
        ("oracle://u:p@h/d", "unsupported scheme 'oracle'"),
        ("postgresql:///d", "names no host"),
        ("mysql://u:p@h:99999/d", "port"),
        ("sqlite:///", "names a file"),
    ],
)
def test_bad_urls_are_named_by_credential_without_the_url(url: Any, why: str) -> None:
    with pytest.raises(NodeError) as raised:
        parse_url(url, "shop-db")
    assert raised.value.non_retryable
    assert "credential 'shop-db'" in raised.value.message
    assert why in raised.value.message
    if isinstance(url, str) and "@" in url:
        assert url not in raised.value.message


def test_column_values_become_json() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert json_value(Decimal("12.50")) == "12.50"
    assert json_value(moment) == "2026-01-02T03:04:05+00:00"
    assert json_value(date(2026, 1, 2)) == "2026-01-02"
    assert json_value(time(3, 4)) == "03:04:00"
    assert json_value(timedelta(minutes=1, seconds=30)) == 90.0
    assert json_value(b"hi") == "aGk="
    assert json_value(memoryview(b"hi")) == "aGk="
    assert json_value(UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert json_value(float("nan")) == "nan"
    assert json_value({"a": [Decimal("1"), None, True]}) == {"a": ["1", None, True]}
    assert json_value((1, "x")) == [1, "x"]


def test_sql_is_literal_in_the_catalog_and_params_take_templates() -> None:
    assert literal_fields(DbQueryConfig) == frozenset({"sql"})
    props = describe(DbQuery())["config_schema"]["properties"]
    assert props["sql"]["x-template"] is False
    assert props["params"]["x-template"] is True


def test_reads_variables_tells_templates_from_braces() -> None:
    assert reads_variables("WHERE id = {{ input.id }}")
    assert reads_variables("{% for x in nodes.a.output %}{{ x }}{% endfor %}")
    assert not reads_variables("SELECT '{{1,2},{3,4}}'::int[]")
    assert not reads_variables("SELECT '{{ 1 }}'")
    assert not reads_variables("SELECT 1")


def _definition(**config: Any) -> dict[str, Any]:
    return {
        "name": "w",
        "nodes": [{"id": "q", "type": "db.query", "config": {"credential": "db", **config}}],
    }


def test_validation_rejects_a_template_in_sql_and_points_to_params() -> None:
    _, problems = check(_definition(sql="SELECT {{ input.id }}"), build_registry())
    assert [(p.node_id, p.path) for p in problems] == [("q", "config.sql")]
    assert "params" in problems[0].message


def test_validation_checks_sql_even_when_it_looks_like_a_template() -> None:
    """A literal field's own errors are reported, not deferred to rendering."""
    _, problems = check(_definition(sql=""), build_registry())
    assert [p.path for p in problems] == ["config.sql"]
    _, problems = check(_definition(sql="{{ 1,2 }"), build_registry())
    assert problems == []


def test_validation_accepts_templates_in_params_and_checks_their_references() -> None:
    definition = _definition(sql="SELECT %s", params=["{{ input.id }}"])
    assert check(definition, build_registry())[1] == []
    bad = _definition(sql="SELECT %s", params=["{{ nodes.nowhere.output }}"])
    _, problems = check(bad, build_registry())
    assert [p.path for p in problems] == ["config.params[0]"]
