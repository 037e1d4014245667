"""Control-flow node types: condition, switch, wait, fail, stop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conveyor.durations import Duration
from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext, NodeResult, NodeType, Stop

TRUE_FALSE = frozenset({"true", "false"})


class ConditionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    if_: Any = Field(alias="if", description="a value or template; its truth picks the branch")


class Condition(NodeType):
    name = "condition"
    title = "Condition"
    category = "control"
    icon = "branch"
    description = "Take branch 'true' or 'false' depending on a value."
    config_model = ConditionConfig
    example = {
        "id": "big_order",
        "type": "condition",
        "config": {"if": "{{ input.total > 1000 }}"},
    }

    def branches(self, config: dict[str, Any]) -> frozenset[str]:
        return TRUE_FALSE

    async def run(self, ctx: NodeContext, config: ConditionConfig) -> NodeResult:
        value = _truth(config.if_)
        return NodeResult(output={"result": value}, branch="true" if value else "false")


def _truth(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "off", "none", "null")
    return bool(value)


class SwitchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any = Field(description="compared with each case's value")
    cases: dict[str, Any] = Field(
        min_length=1, description="branch label -> value that selects it; else 'default'"
    )

    @model_validator(mode="after")
    def _no_default_case(self) -> SwitchConfig:
        if "default" in self.cases:
            raise ValueError("'default' is implied; do not list it as a case")
        return self


class Switch(NodeType):
    name = "switch"
    title = "Switch"
    category = "control"
    icon = "switch"
    branches_from = "cases"
    description = "Take the branch whose case equals the value, or 'default'."
    config_model = SwitchConfig
    example = {
        "id": "route",
        "type": "switch",
        "config": {"value": "{{ input.country }}", "cases": {"france": "FR", "germany": "DE"}},
    }

    def branches(self, config: dict[str, Any]) -> frozenset[str]:
        cases = config.get("cases")
        labels = set(cases) if isinstance(cases, dict) else set()
        return frozenset(labels | {"default"})

    async def run(self, ctx: NodeContext, config: SwitchConfig) -> NodeResult:
        for label, expected in config.cases.items():
            if expected == config.value or str(expected) == str(config.value):
                return NodeResult(output={"case": label, "value": config.value}, branch=label)
        return NodeResult(output={"case": "default", "value": config.value}, branch="default")


class WaitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration: Duration | None = Field(default=None, description="how long to wait")
    until: datetime | None = Field(
        default=None, description="when to go on (ISO 8601; without a time zone: UTC)"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> WaitConfig:
        if (self.duration is None) == (self.until is None):
            raise ValueError("give exactly one of 'duration' or 'until'")
        if self.until is not None and self.until.tzinfo is None:
            self.until = self.until.replace(tzinfo=UTC)
        return self


class Wait(NodeType):
    name = "wait"
    title = "Wait"
    category = "control"
    icon = "clock"
    description = "Pause the execution for a duration or until a time."
    config_model = WaitConfig
    example = {"id": "cool_off", "type": "wait", "config": {"duration": "1h"}}
    wait_bound = "config.duration (or config.until)"

    async def run(self, ctx: NodeContext, config: WaitConfig) -> NodeResult:
        until = config.until or ctx.now() + (config.duration or timedelta(0))
        return NodeResult(output={"waited_until": until.isoformat()}, wait_until=until)


class FailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(default="failed on purpose", description="the step's error message")
    # A deliberate failure is not retried unless asked to be.
    non_retryable: bool = Field(default=True, description="false: the retry policy applies")


class Fail(NodeType):
    name = "fail"
    title = "Fail"
    category = "control"
    icon = "stop"
    description = "Fail with a message (for testing error paths)."
    config_model = FailConfig
    example = {
        "id": "reject",
        "type": "fail",
        "config": {"message": "order {{ input.id }} has no items"},
    }

    async def run(self, ctx: NodeContext, config: FailConfig) -> Any:
        raise NodeError(config.message, non_retryable=config.non_retryable)


class WaitForEventConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str = Field(min_length=1, max_length=200, description="the signal name to wait for")
    timeout: Duration | None = Field(default=None, description="fail the step after this long")

    @field_validator("event")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith("child:"):
            raise ValueError("signal names starting with 'child:' are reserved")
        return value


class WaitForEvent(NodeType):
    name = "wait_for_event"
    title = "Wait for event"
    category = "control"
    icon = "signal"
    description = "Wait for a signal sent to the execution; its data becomes the output."
    config_model = WaitForEventConfig
    example = {
        "id": "approval",
        "type": "wait_for_event",
        "config": {"event": "approved", "timeout": "3d"},
    }
    wait_bound = "config.timeout"

    async def run(self, ctx: NodeContext, config: WaitForEventConfig) -> NodeResult:
        until = ctx.now() + config.timeout if config.timeout is not None else None
        return NodeResult(
            output={"waiting_for": config.event}, wait_signal=config.event, wait_until=until
        )


class StopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["succeeded", "failed", "cancelled"] = Field(
        default="succeeded", description="the execution's final status"
    )
    message: str = Field(
        default="", max_length=10_000, description="why; shown as the execution's error"
    )


class StopExecution(NodeType):
    name = "stop"
    title = "Stop"
    category = "control"
    icon = "stop"
    description = (
        "End the execution now with a status and a message: nodes not started are skipped, "
        "running ones cancelled."
    )
    config_model = StopConfig
    example = {
        "id": "nothing_to_do",
        "type": "stop",
        "needs": "check.false",
        "config": {"status": "succeeded", "message": "no new orders"},
    }

    async def run(self, ctx: NodeContext, config: StopConfig) -> NodeResult:
        return NodeResult(
            output={"status": config.status, "message": config.message},
            stop=Stop(config.status, config.message),
        )
