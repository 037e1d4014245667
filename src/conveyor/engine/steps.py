"""Running one attempt of one node: config check, timeout, and turning errors into data."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from conveyor.engine.limits import Limits
from conveyor.engine.retry import StepFailure
from conveyor.engine.tracebacks import node_traceback
from conveyor.errors import NodeError, NodeTimeout
from conveyor.nodes.base import NodeContext, NodeResult, NodeType, Stop
from conveyor.redaction import Redactor, strings_in


@dataclass
class Outcome:
    """What an attempt produced: an output (maybe with a branch or a wait) or an error."""

    output: Any = None
    branch: str | None = None
    wait_until: datetime | None = None
    wait_signal: str | None = None
    stop: Stop | None = None
    error: dict[str, Any] | None = None
    failure: StepFailure | None = None
    logs: list[dict[str, str]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def error_data(exc: BaseException, rendered: Any = None) -> dict[str, Any]:
    """A NodeError is the node's own report, kept as raised. Any other exception is a bug
    to debug: it keeps its traceback, and the step's rendered config values (which may hold
    input or secrets) are redacted from its text."""
    message = str(exc) or repr(exc)
    if isinstance(exc, NodeError):
        data: dict[str, Any] = {"type": type(exc).__name__, "message": message}
        data["non_retryable"] = exc.non_retryable
        if exc.details:
            data["details"] = exc.details
        return data
    redact = Redactor(strings_in(rendered))
    return {
        "type": type(exc).__name__,
        "message": redact(message),
        "traceback": node_traceback(exc, redact),
    }


def failed(exc: BaseException, ctx: NodeContext | None = None, rendered: Any = None) -> Outcome:
    retry_after = exc.retry_after if isinstance(exc, NodeError) else None
    non_retryable = exc.non_retryable if isinstance(exc, NodeError) else False
    outcome = Outcome(
        error=error_data(exc, rendered),
        failure=StepFailure(type(exc).__name__, non_retryable, retry_after),
    )
    if ctx is not None:
        outcome.logs = ctx.log.lines
        outcome.usage = ctx.usage.as_dict()
    return outcome


def check_config(node_type: NodeType, rendered: Any) -> Any:
    """Validate a rendered config; a bad one is a non-retryable error naming the field."""
    try:
        return node_type.config_model.model_validate(rendered)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(["config", *(str(p) for p in first["loc"])])
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise NodeError(f"{path}: {first['msg']}{more}", non_retryable=True) from None


async def run_attempt(
    node_type: NodeType,
    ctx: NodeContext,
    rendered: Any,
    step_timeout: timedelta | None,
    limits: Limits | None = None,
) -> Outcome:
    """Run one attempt. CancelledError propagates; every other error becomes an Outcome."""
    try:
        config = check_config(node_type, rendered)
        if step_timeout is None:
            result = await node_type.run(ctx, config)
        else:
            try:
                async with asyncio.timeout(step_timeout.total_seconds()) as scope:
                    result = await node_type.run(ctx, config)
            except TimeoutError:
                if not scope.expired():
                    raise
                raise NodeTimeout(
                    f"step timed out after {step_timeout.total_seconds():g}s"
                ) from None
        if limits is not None:
            limits.check_step_output(result.output if isinstance(result, NodeResult) else result)
    except Exception as exc:
        return failed(exc, ctx, rendered)
    outcome = Outcome(logs=ctx.log.lines, usage=ctx.usage.as_dict())
    if isinstance(result, NodeResult):
        outcome.output = result.output
        outcome.branch = result.branch
        outcome.wait_until = result.wait_until
        outcome.wait_signal = result.wait_signal
        outcome.stop = result.stop
    else:
        outcome.output = result
    return outcome
