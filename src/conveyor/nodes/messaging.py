"""Messaging node types: notify (an in-app notification) and task.create (a task for a
person), both kept in the workspace's inbox and made once per step, however often it runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from conveyor.durations import Duration
from conveyor.nodes.base import NodeContext, NodeType


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: str = Field(
        default="in-app", min_length=1, max_length=100, description="a label to group by"
    )
    title: str = Field(min_length=1, max_length=500, description="what the inbox lists")
    message: str = Field(default="", description="the text under the title")
    to: str | None = Field(
        default=None,
        max_length=320,
        description="a member's email or user id; absent: everyone in the workspace",
    )
    data: Any = Field(default=None, description="any JSON kept with the notification")


class Notify(NodeType):
    """A notification in the workspace's inbox (or one member's), linked to the execution.
    A retried step finds the one its first attempt made."""

    name = "notify"
    title = "Notify"
    category = "messaging"
    icon = "bell"
    description = "Send an in-app notification to the workspace's inbox, or to one member."
    config_model = NotifyConfig
    example = {
        "id": "tell_ops",
        "type": "notify",
        "config": {
            "title": "Order {{ input.order_id }} shipped",
            "message": "Carrier: {{ input.carrier }}",
            "to": "ops@example.com",
        },
    }

    async def run(self, ctx: NodeContext, config: NotifyConfig) -> Any:
        payload = config.model_dump()
        notification_id = await ctx.services.notify(ctx.execution_id, ctx.node_id, payload)
        return {"notification_id": notification_id, "channel": config.channel}


class TaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=500, description="what needs doing")
    body: str = Field(default="", description="details, instructions")
    assignee: str | None = Field(
        default=None,
        max_length=320,
        description="an email or a member's user id; absent: anyone in the workspace",
    )
    due_at: AwareDatetime | None = Field(
        default=None, description="when it is due (ISO 8601 with a time zone)"
    )
    due_in: Duration | None = Field(
        default=None, description="when it is due, counted from when the task is made"
    )

    @model_validator(mode="after")
    def _one_due(self) -> TaskConfig:
        if self.due_at is not None and self.due_in is not None:
            raise ValueError("give due_at or due_in, not both")
        return self


class TaskCreate(NodeType):
    """A task for a person in the workspace's inbox, linked to the execution; open until
    someone marks it done. A retried step finds the one its first attempt made. The step
    does not wait for the task: follow it with wait_for_event to wait for an answer."""

    name = "task.create"
    title = "Create task"
    category = "messaging"
    icon = "check-square"
    description = "Create a task (title, body, assignee, due date) in the workspace's inbox."
    config_model = TaskConfig
    example = {
        "id": "review",
        "type": "task.create",
        "config": {
            "title": "Review refund for order {{ input.order_id }}",
            "body": "The customer asked for {{ input.amount }} EUR back.",
            "assignee": "finance@example.com",
            "due_in": "2d",
        },
    }

    async def run(self, ctx: NodeContext, config: TaskConfig) -> Any:
        due = config.due_at
        if config.due_in is not None:
            due = ctx.now() + config.due_in
        payload = {
            "title": config.title,
            "body": config.body,
            "assignee": config.assignee,
            "due_at": due.astimezone(UTC) if isinstance(due, datetime) else None,
        }
        task_id = await ctx.services.create_task(ctx.execution_id, ctx.node_id, payload)
        return {"task_id": task_id, "assignee": config.assignee}
