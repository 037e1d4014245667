"""Node types over lists of items: filter, split, aggregate."""

from __future__ import annotations

import copy
import json
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext, NodeType
from conveyor.nodes.conditions import ItemCondition, holds
from conveyor.nodes.paths import MISSING, get_path, set_path, type_name


class Combine(StrEnum):
    ALL = "all"
    ANY = "any"


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Any] = Field(description="the list to filter, e.g. '{{ nodes.get.output }}'")
    conditions: list[ItemCondition] = Field(
        min_length=1, description="conditions on each item's fields"
    )
    combine: Combine = Field(
        default=Combine.ALL, description="keep an item when all conditions hold, or any"
    )


class Filter(NodeType):
    name = "filter"
    title = "Filter"
    category = "data"
    icon = "filter"
    description = "Keep the items of a list that meet structured conditions."
    config_model = FilterConfig
    example = {
        "id": "adults",
        "type": "filter",
        "config": {
            "items": "{{ nodes.get.output.body.people }}",
            "conditions": [
                {"field": "age", "op": "gte", "value": 18},
                {"field": "email", "op": "ends_with", "value": "@example.com"},
            ],
            "combine": "all",
        },
    }

    async def run(self, ctx: NodeContext, config: FilterConfig) -> dict[str, Any]:
        test = all if config.combine == Combine.ALL else any
        kept = [item for item in config.items if test(holds(c, item) for c in config.conditions)]
        return {"kept": kept, "dropped_count": len(config.items) - len(kept)}


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Any = Field(
        alias="from",
        description="a list, or an object (or a list of objects) holding the list in 'field'",
    )
    field: str = Field(
        default="", max_length=500, description="the dotted field holding the list to split"
    )
    keep_fields: list[str] = Field(
        default_factory=list,
        description="fields of the object to copy into each item (items that are not "
        "objects become {<field>: item})",
    )
    size: int | None = Field(
        default=None, ge=1, le=100_000, description="split into chunks of this many items"
    )

    @model_validator(mode="after")
    def _keep_needs_field(self) -> SplitConfig:
        if self.keep_fields and not self.field:
            raise ValueError("keep_fields needs field")
        return self


class Split(NodeType):
    name = "split"
    title = "Split out"
    category = "data"
    icon = "split"
    description = "Turn a list field into separate items, or a list into chunks of N."
    config_model = SplitConfig
    example = {
        "id": "lines",
        "type": "split",
        "config": {
            "from": "{{ nodes.order.output }}",
            "field": "lines",
            "keep_fields": ["order_id"],
        },
    }

    async def run(self, ctx: NodeContext, config: SplitConfig) -> dict[str, Any]:
        items = split_out(config)
        if config.size is None:
            return {"items": items, "count": len(items)}
        chunks = [items[i : i + config.size] for i in range(0, len(items), config.size)]
        return {"chunks": chunks, "count": len(items)}


def split_out(config: SplitConfig) -> list[Any]:
    if not config.field:
        if not isinstance(config.from_, list):
            raise NodeError(
                f"config.from: expected a list, got {type_name(config.from_)}", non_retryable=True
            )
        return list(config.from_)
    sources = config.from_ if isinstance(config.from_, list) else [config.from_]
    items: list[Any] = []
    for position, source in enumerate(sources):
        found = get_path(source, config.field)
        if found is MISSING or found is None:
            continue
        if not isinstance(found, list):
            raise NodeError(
                f"config.field: '{config.field}' of item {position} holds {type_name(found)}, "
                "not a list",
                non_retryable=True,
            )
        for element in found:
            items.append(_with_kept(element, source, config))
    return items


def _with_kept(element: Any, source: Any, config: SplitConfig) -> Any:
    if not config.keep_fields:
        return element
    item = (
        copy.deepcopy(element)
        if isinstance(element, dict)
        else {config.field.rsplit(".", 1)[-1]: element}
    )
    for name in config.keep_fields:
        value = get_path(source, name)
        if value is not MISSING:
            set_path(item, name, copy.deepcopy(value))
    return item


class MetricOp(StrEnum):
    COUNT = "count"
    SUM = "sum"
    MIN = "min"
    MAX = "max"
    AVG = "avg"
    LIST = "list"


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    op: MetricOp = Field(description="count, sum, min, max, avg or list")
    field: str = Field(
        default="", max_length=500, description="the dotted field it reads (count: optional)"
    )
    as_: str = Field(
        default="", alias="as", max_length=200, description="output name (default: op_field)"
    )

    @model_validator(mode="after")
    def _field_needed(self) -> Metric:
        if self.op != MetricOp.COUNT and not self.field:
            raise ValueError(f"metric '{self.op}' needs a field")
        return self

    @property
    def label(self) -> str:
        if self.as_:
            return self.as_
        return f"{self.op}_{self.field.replace('.', '_')}" if self.field else str(self.op)


class AggregateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Any] = Field(description="the list of items")
    field: str = Field(
        default="",
        max_length=500,
        description="without metrics: collect this field's values into 'values' (items "
        "without it are left out); empty: every item",
    )
    group_by: str = Field(
        default="",
        max_length=500,
        description="with metrics: the field to group items by; each group holds its value "
        "under the same (dotted) name",
    )
    metrics: list[Metric] = Field(
        default_factory=list, description="per group: count, sum, min, max, avg, list"
    )

    @model_validator(mode="after")
    def _mode(self) -> AggregateConfig:
        if self.group_by and not self.metrics:
            raise ValueError("group_by needs metrics")
        if self.metrics and self.field:
            raise ValueError("give either field (collect values) or metrics, not both")
        return self


class Aggregate(NodeType):
    name = "aggregate"
    title = "Aggregate"
    category = "data"
    icon = "sigma"
    description = "Collect a field from a list of items, or group them with count/sum/avg."
    config_model = AggregateConfig
    example = {
        "id": "totals",
        "type": "aggregate",
        "config": {
            "items": "{{ nodes.orders.output.items }}",
            "group_by": "customer",
            "metrics": [{"op": "count"}, {"op": "sum", "field": "amount", "as": "total"}],
        },
    }

    async def run(self, ctx: NodeContext, config: AggregateConfig) -> dict[str, Any]:
        if not config.metrics:
            values = [get_path(item, config.field) for item in config.items]
            kept = [v for v in values if v is not MISSING]
            return {"values": kept, "count": len(kept)}
        groups: dict[str, tuple[Any, list[Any]]] = {}
        for item in config.items:
            key = get_path(item, config.group_by) if config.group_by else None
            key = None if key is MISSING else key
            groups.setdefault(_group_key(key), (key, []))[1].append(item)
        return {"groups": [_group(config, key, members) for key, members in groups.values()]}


def _group(config: AggregateConfig, key: Any, members: list[Any]) -> dict[str, Any]:
    """One group: its key under the group_by field's own (dotted) name, then the metrics."""
    group: dict[str, Any] = {}
    if config.group_by:
        set_path(group, config.group_by, key)
    for metric in config.metrics:
        group[metric.label] = measure(metric, members)
    return group


def _group_key(key: Any) -> str:
    # Distinguishes 1 from "1" and true from 1, as JSON does.
    return f"{type_name(key)}:{key!r}"


def measure(metric: Metric, items: list[Any]) -> Any:
    if metric.op == MetricOp.COUNT and not metric.field:
        return len(items)
    values = [v for v in (get_path(i, metric.field) for i in items) if v is not MISSING]
    values = [v for v in values if v is not None]
    if metric.op == MetricOp.COUNT:
        return len(values)
    if metric.op == MetricOp.LIST:
        return values
    if metric.op in (MetricOp.SUM, MetricOp.AVG):
        for value in values:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise NodeError(
                    f"metric {metric.op} of '{metric.field}': {json.dumps(value)} is not a number",
                    non_retryable=True,
                )
        if metric.op == MetricOp.SUM:
            return sum(values)
        return sum(values) / len(values) if values else None
    if not values:
        return None
    try:
        return min(values) if metric.op == MetricOp.MIN else max(values)
    except TypeError:
        raise NodeError(
            f"metric {metric.op} of '{metric.field}': the values are of types that do not "
            "compare (numbers with strings?)",
            non_retryable=True,
        ) from None
