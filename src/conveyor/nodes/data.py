"""Data node types: transform."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor.nodes.base import NodeContext, NodeType


class TransformConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: Any = Field(description="the node's output; templates inside are rendered")


class Transform(NodeType):
    name = "transform"
    title = "Transform"
    category = "data"
    icon = "braces"
    description = "Build an output object from templates."
    config_model = TransformConfig
    example = {
        "id": "summary",
        "type": "transform",
        "config": {"output": {"order": "{{ input.id }}", "total": "{{ input.total }}"}},
    }

    async def run(self, ctx: NodeContext, config: TransformConfig) -> Any:
        return config.output
