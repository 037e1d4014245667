"""The ``workflow.call`` node type: run another workflow as a child execution."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor.durations import Duration
from conveyor.nodes.base import NodeContext, NodeResult, NodeType


class WorkflowCallConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, description="name or id of the workflow to run")
    input: Any = Field(default_factory=dict, description="the child execution's input")
    timeout: Duration | None = Field(default=None, description="fail if the child takes longer")


class WorkflowCall(NodeType):
    name = "workflow.call"
    title = "Call workflow"
    category = "workflow"
    icon = "workflow"
    description = "Run another workflow as a child execution and wait for its result."
    config_model = WorkflowCallConfig
    example = {
        "id": "invoice",
        "type": "workflow.call",
        "config": {
            "workflow": "make-invoice",
            "input": {"order_id": "{{ input.id }}"},
            "timeout": "15m",
        },
    }
    wait_bound = "config.timeout"

    async def run(self, ctx: NodeContext, config: WorkflowCallConfig) -> NodeResult:
        # The idempotency key makes every attempt of this step find the same child.
        child_id = await ctx.services.start_child(
            ctx.execution_id, ctx.node_id, config.workflow, config.input, ctx.idempotency_key
        )
        ctx.log.info(f"started child execution {child_id}")
        until = ctx.now() + config.timeout if config.timeout is not None else None
        return NodeResult(
            output={"child_execution_id": child_id},
            wait_signal=f"child:{child_id}",
            wait_until=until,
        )
