"""Structured conditions on items (``filter``): a field, an operator and a value, no code.

Templates are rendered once, before a step runs, so they cannot look at each item; a
condition names the item's field instead and is evaluated per item here.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.nodes.paths import MISSING, get_path


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    MATCHES = "matches"
    EXISTS = "exists"
    EMPTY = "empty"
    IN = "in"


_UNARY = frozenset({Op.EXISTS, Op.EMPTY})
MAX_PATTERN = 1000


class ItemCondition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str = Field(
        default="",
        max_length=500,
        description="the item's field (dotted, 'address.city'; a number picks a list "
        "element); empty: the item itself",
    )
    op: Op = Field(
        description="eq, ne, gt, gte, lt, lte, contains, starts_with, ends_with, matches "
        "(a regular expression, searched), exists, empty (missing, null, '', [] or {}), in"
    )
    value: Any = Field(
        default=None, description="what to compare with (not used by exists and empty)"
    )
    negate: bool = Field(default=False, description="keep the items the condition rejects")
    ignore_case: bool = Field(default=False, description="compare strings case-insensitively")

    @model_validator(mode="after")
    def _value_fits(self) -> ItemCondition:
        if self.op == Op.IN and not isinstance(self.value, list):
            raise ValueError("op 'in' needs a list as value")
        if self.op == Op.MATCHES:
            if not isinstance(self.value, str) or len(self.value) > MAX_PATTERN:
                raise ValueError(f"op 'matches' needs a pattern of at most {MAX_PATTERN} chars")
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self


def holds(condition: ItemCondition, item: Any) -> bool:
    """Whether ``item`` meets ``condition``. A missing field meets only ``empty`` (and the
    negation of the others); values of types that do not compare fail the comparison."""
    found = get_path(item, condition.field)
    return _test(condition, found) != condition.negate


def _test(condition: ItemCondition, found: Any) -> bool:
    op = condition.op
    if op == Op.EXISTS:
        return found is not MISSING
    if op == Op.EMPTY:
        return found is MISSING or found is None or found in ("", [], {})
    if found is MISSING:
        return False
    expected = condition.value
    if op == Op.MATCHES:
        flags = re.IGNORECASE if condition.ignore_case else 0
        return isinstance(found, str) and re.search(expected, found, flags) is not None
    if condition.ignore_case:
        found, expected = _folded(found), _folded(expected)
    if op in (Op.EQ, Op.NE):
        return _equal(found, expected) == (op == Op.EQ)
    if op == Op.IN:
        return any(_equal(found, option) for option in expected)
    if op in (Op.GT, Op.GTE, Op.LT, Op.LTE):
        return _compare(op, found, expected)
    return _text_test(op, found, expected)


def _text_test(op: Op, found: Any, expected: Any) -> bool:
    if op == Op.CONTAINS:
        if isinstance(found, str):
            return isinstance(expected, str) and expected in found
        if isinstance(found, list):
            return any(_equal(element, expected) for element in found)
        if isinstance(found, dict):
            return isinstance(expected, str) and expected in found
        return False
    if not isinstance(found, str) or not isinstance(expected, str):
        return False
    if op == Op.STARTS_WITH:
        return found.startswith(expected)
    return found.endswith(expected)


def _folded(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, list):
        return [_folded(v) for v in value]
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    # JSON semantics: true is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _compare(op: Op, a: Any, b: Any) -> bool:
    if not ((_number(a) and _number(b)) or (isinstance(a, str) and isinstance(b, str))):
        return False
    if op == Op.GT:
        return bool(a > b)
    if op == Op.GTE:
        return bool(a >= b)
    if op == Op.LT:
        return bool(a < b)
    return bool(a <= b)
