"""The ``merge`` node type: combine the outputs of several upstream nodes into one list.

Which upstream nodes it waits for is the node's ``wait_for`` (all, the default, or first);
an input whose node was skipped (or, with ``wait_for: first``, has not finished: such nodes
read as ``{status: pending, output: null}``) is null and counts as an empty list.
"""

from __future__ import annotations

import copy
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext, NodeType
from conveyor.nodes.paths import MISSING, get_path, type_name


class MergeMode(StrEnum):
    APPEND = "append"
    POSITION = "position"
    BY_KEY = "by_key"


class JoinKind(StrEnum):
    INNER = "inner"
    LEFT = "left"
    OUTER = "outer"


class MergeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(
        min_length=1,
        description="the inputs, usually templates: ['{{ nodes.a.output.items }}', ...]; "
        "a list is its items, null is no items, anything else one item",
    )
    mode: MergeMode = Field(
        default=MergeMode.APPEND,
        description="append (one list, in input order), position (the i-th items of every "
        "input merged into one object), by_key (objects with equal 'key' merged)",
    )
    key: str = Field(
        default="", max_length=500, description="by_key: the dotted field items match on"
    )
    join: JoinKind = Field(
        default=JoinKind.INNER,
        description="position and by_key: inner (only items every input has), left (every "
        "item of the first input), outer (every item of every input)",
    )

    @model_validator(mode="after")
    def _key_for_by_key(self) -> MergeConfig:
        if self.mode == MergeMode.BY_KEY and not self.key:
            raise ValueError("mode by_key needs key")
        return self


class Merge(NodeType):
    name = "merge"
    title = "Merge"
    category = "data"
    icon = "merge"
    description = "Combine the outputs of several nodes: append, by position, or by key."
    config_model = MergeConfig
    example = {
        "id": "combined",
        "type": "merge",
        "needs": ["customers", "orders"],
        "config": {
            "inputs": ["{{ nodes.customers.output }}", "{{ nodes.orders.output }}"],
            "mode": "by_key",
            "key": "customer_id",
            "join": "left",
        },
    }

    async def run(self, ctx: NodeContext, config: MergeConfig) -> dict[str, Any]:
        lists = [_as_list(value) for value in config.inputs]
        if config.mode == MergeMode.APPEND:
            items = [item for values in lists for item in values]
        elif config.mode == MergeMode.POSITION:
            items = by_position(lists, config.join)
        else:
            items = by_key(lists, config.key, config.join)
        return {"items": items, "count": len(items)}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _combined(parts: list[Any], where: str) -> dict[str, Any]:
    """Objects merged into one, later ones winning on equal field names."""
    merged: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict):
            raise NodeError(
                f"{where}: merging needs objects, got {type_name(part)}", non_retryable=True
            )
        merged.update(copy.deepcopy(part))
    return merged


def by_position(lists: list[list[Any]], join: JoinKind) -> list[dict[str, Any]]:
    lengths = [len(values) for values in lists]
    count = {
        JoinKind.INNER: min(lengths),
        JoinKind.LEFT: lengths[0],
        JoinKind.OUTER: max(lengths),
    }[join]
    return [
        _combined([values[i] for values in lists if i < len(values)], f"item {i}")
        for i in range(count)
    ]


def by_key(lists: list[list[Any]], key: str, join: JoinKind) -> list[dict[str, Any]]:
    """Join the inputs in turn, like SQL: the first with the second, the result with the
    third. An item matching several items gives one result per match."""
    rows = [_combined([item], f"input 0 item {i}") for i, item in enumerate(lists[0])]
    for number, values in enumerate(lists[1:], start=1):
        right = [_combined([item], f"input {number} item {i}") for i, item in enumerate(values)]
        rows = _join_two(rows, right, key, join)
    return rows


def _join_two(
    left: list[dict[str, Any]], right: list[dict[str, Any]], key: str, join: JoinKind
) -> list[dict[str, Any]]:
    index: dict[str, list[int]] = {}
    for position, item in enumerate(right):
        value = get_path(item, key)
        if value is not MISSING and value is not None:
            index.setdefault(_key_of(value), []).append(position)
    matched: set[int] = set()
    rows: list[dict[str, Any]] = []
    for item in left:
        value = get_path(item, key)
        found = index.get(_key_of(value), []) if value is not MISSING and value is not None else []
        for position in found:
            matched.add(position)
            rows.append({**item, **right[position]})
        if not found and join != JoinKind.INNER:
            rows.append(item)
    if join == JoinKind.OUTER:
        rows += [item for position, item in enumerate(right) if position not in matched]
    return rows


def _key_of(value: Any) -> str:
    # 1 and "1" are different keys; objects and lists match by content.
    return json.dumps(value, sort_keys=True, default=str) + type_name(value)
