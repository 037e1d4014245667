"""The ``foreach`` node type: run a workflow or a node over each item of a list.

``workflow:`` starts one child execution per item (input: the item) with the idempotency
key ``<execution id>:<node id>:<index>``, so a retried or recovered step finds the children
it already started, and a finished item is never run again: its child's stored result is
reused. ``node:`` runs a node type inline within this one step; its config is rendered per
item with ``item`` and ``index``; each finished item's result is kept as a step checkpoint,
so a retried or recovered step runs only the items that had not finished.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from conveyor.errors import (
    InputError,
    InvalidInput,
    NodeError,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
)
from conveyor.nodes.base import NodeContext, NodeResult, NodeType

MAX_PARALLELISM = 100


class InlineNode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, description="the node type to run per item")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="its config; templates see 'item' and 'index' besides the usual variables",
    )


class OnItemError(StrEnum):
    FAIL = "fail"
    CONTINUE = "continue"


class ForeachConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Any] = Field(description="the list to go over, e.g. '{{ nodes.get.output }}'")
    workflow: str | None = Field(
        default=None,
        min_length=1,
        description="run this workflow once per item, as a child execution with the item "
        "as input (durable: finished items are never run again)",
    )
    node: InlineNode | None = Field(
        default=None,
        description="or run this node per item, inside this step (a retry runs every item again)",
    )
    parallelism: int = Field(
        default=1, ge=1, le=MAX_PARALLELISM, description="items running at once"
    )
    on_item_error: OnItemError = Field(
        default=OnItemError.FAIL,
        description="fail: the step fails with the first failed item's error (items not yet "
        "started are not started); continue: the item's result is {error: ...}",
    )

    @model_validator(mode="after")
    def _one_target(self) -> ForeachConfig:
        if (self.workflow is None) == (self.node is None):
            raise ValueError("give exactly one of 'workflow' or 'node'")
        return self


@dataclass
class _ItemFailed:
    index: int
    error: NodeError


class Foreach(NodeType):
    name = "foreach"
    title = "For each"
    category = "control"
    icon = "repeat"
    description = "Run a workflow or a node for each item of a list; results in order."
    config_model = ForeachConfig
    raw_config = frozenset({"node"})
    example = {
        "id": "each_user",
        "type": "foreach",
        "config": {
            "items": "{{ nodes.users.output.body }}",
            "node": {
                "type": "http.request",
                "config": {"method": "POST", "url": "https://example.com/users/{{ item.id }}"},
            },
            "parallelism": 4,
        },
    }

    async def run(self, ctx: NodeContext, config: ForeachConfig) -> dict[str, Any]:
        total = len(config.items)
        semaphore = asyncio.Semaphore(config.parallelism)
        failures: list[_ItemFailed] = []
        children: dict[int, str] = {}
        progress = [0]
        # Inline items an earlier attempt finished are taken from its checkpoints, not run
        # again (child executions are found again by their keys).
        done = await ctx.checkpoints() if config.node is not None else {}

        async def one(index: int, item: Any) -> Any:
            async with semaphore:
                if failures and config.on_item_error == OnItemError.FAIL:
                    return None
                try:
                    if config.workflow is not None:
                        return await _child(ctx, config.workflow, index, item, children)
                    assert config.node is not None
                    key = f"item:{index}"
                    if key in done:
                        return done[key]
                    result = await _inline(ctx, config.node, index, item)
                    await ctx.save_checkpoint(key, result)
                    return result
                except NodeError as exc:
                    failures.append(_ItemFailed(index, exc))
                    return {"error": {"type": type(exc).__name__, "message": str(exc)}}
                finally:
                    progress[0] += 1
                    ctx.report_progress(progress[0], total)

        results = await asyncio.gather(*(one(i, item) for i, item in enumerate(config.items)))
        if failures and config.on_item_error == OnItemError.FAIL:
            first = min(failures, key=lambda f: f.index)
            raise NodeError(
                f"item {first.index}: {first.error}",
                non_retryable=first.error.non_retryable,
                retry_after=first.error.retry_after,
            )
        output: dict[str, Any] = {
            "results": list(results),
            "count": total,
            "failed_count": len(failures),
        }
        if config.workflow is not None:
            output["executions"] = [children.get(i) for i in range(total)]
        return output


async def _child(
    ctx: NodeContext, workflow: str, index: int, item: Any, children: dict[int, str]
) -> Any:
    try:
        child_id = await ctx.services.start_child(
            ctx.execution_id, ctx.node_id, workflow, item, f"{ctx.idempotency_key}:{index}"
        )
    except (NotFound, InvalidInput, InputError, PayloadTooLarge) as exc:
        raise NodeError(f"cannot start workflow '{workflow}': {exc}", non_retryable=True) from None
    except StoreUnavailable as exc:
        raise NodeError(f"cannot start workflow '{workflow}': {exc}") from None
    children[index] = child_id
    outcome = await ctx.services.wait_child(child_id)
    if outcome["status"] == "succeeded":
        return outcome["result"]
    error = outcome.get("error") or {}
    message = f"child execution {child_id} ended {outcome['status']}"
    if error.get("message"):
        message += f": {error['message']}"
    raise NodeError(message, non_retryable=True, details={"child_execution_id": child_id})


async def _inline(ctx: NodeContext, raw: InlineNode, index: int, item: Any) -> Any:
    if ctx.render is None or ctx.node_types is None:
        raise NodeError("foreach: this runtime cannot run nodes inline", non_retryable=True)
    try:
        spec = InlineNode.model_validate(
            ctx.render(raw.model_dump(), {"item": item, "index": index})
        )
    except ValidationError as exc:
        raise NodeError(f"config.node: {exc.errors()[0]['msg']}", non_retryable=True) from None
    node_type = _inline_type(ctx, spec.type)
    try:
        config = node_type.config_model.model_validate(spec.config)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(["config.node.config", *(str(p) for p in first["loc"])])
        raise NodeError(f"{path}: {first['msg']}", non_retryable=True) from None
    try:
        result = await node_type.run(replace(ctx, node_id=f"{ctx.node_id}:{index}"), config)
    except NodeError:
        raise
    except Exception as exc:
        # A bug or a transient failure inside the node: worth another attempt of the step.
        raise NodeError(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(result, NodeResult):
        return result
    if result.wait_until is not None or result.wait_signal is not None or result.stop is not None:
        raise NodeError(
            f"node type '{spec.type}' waits or stops the execution; foreach cannot run it "
            "inline (use 'workflow:')",
            non_retryable=True,
        )
    return result.output


def _inline_type(ctx: NodeContext, name: str) -> NodeType:
    assert ctx.node_types is not None
    node_type = ctx.node_types(name)
    if node_type is None:
        raise NodeError(f"config.node.type: unknown node type '{name}'", non_retryable=True)
    if node_type.wait_bound is not None:
        raise NodeError(
            f"config.node.type: '{name}' waits; foreach cannot run it inline (use 'workflow:')",
            non_retryable=True,
        )
    if not node_type.repeatable and ctx.attempt > 1:
        raise NodeError(
            f"node type '{name}' is not safe to repeat and this is attempt {ctx.attempt} of "
            "the foreach step, which would run every item again",
            non_retryable=True,
        )
    return node_type
