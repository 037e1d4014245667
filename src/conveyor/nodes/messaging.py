"""Messaging node types: notify (an in-app notification recorded in the store)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor.nodes.base import NodeContext, NodeType


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(default="in-app", min_length=1, max_length=100)
    title: str = Field(min_length=1)
    message: str = ""
    data: Any = None


class Notify(NodeType):
    name = "notify"
    title = "Notify"
    category = "messaging"
    icon = "bell"
    description = "Record an in-app notification."
    config_model = NotifyConfig

    async def run(self, ctx: NodeContext, config: NotifyConfig) -> Any:
        payload = config.model_dump()
        notification_id = await ctx.services.notify(ctx.execution_id, ctx.node_id, payload)
        return {"notification_id": notification_id, "channel": config.channel}
