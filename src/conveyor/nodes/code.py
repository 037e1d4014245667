"""The ``code`` node type: a Python snippet run out of process, in a sandbox, with limits."""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from conveyor.durations import Duration
from conveyor.errors import NodeError
from conveyor.nodes.base import NodeContext, NodeType
from conveyor.nodes.sandbox import Finished, Limits, Sandbox

MB = 1024 * 1024
EXAMPLE_CODE = """def main(input):
    return {"total": sum(item["price"] for item in input["items"])}
"""


class CodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=1,
        max_length=100_000,
        description="Python source defining main(input); its JSON return value is the output. "
        "Never rendered as a template",
        json_schema_extra={
            "x-template": False,
            "x-template-hint": "data reaches the code through 'input' (main(input) receives it)",
        },
    )
    input: Any = Field(
        default=None, description="the value passed to main(input) (templates allowed)"
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), description="wall-clock limit of the snippet's process"
    )
    cpu_seconds: int = Field(default=5, ge=1, le=600, description="CPU time limit")
    memory_mb: int = Field(default=256, ge=64, le=16384, description="address-space limit")
    max_output_bytes: int = Field(
        default=MB, ge=1, le=64 * MB, description="largest JSON output accepted"
    )
    allow_network: bool = Field(
        default=False,
        description="give the snippet the worker's network (only where "
        "CONVEYOR_ALLOW_PRIVATE_NETWORK=true: its connections bypass the address guard)",
    )


class Code(NodeType):
    name = "code"
    title = "Code"
    category = "data"
    icon = "code"
    description = "Run a Python snippet's main(input) in a sandbox; its return value is the output."
    config_model = CodeConfig
    example = {
        "id": "total",
        "type": "code",
        "config": {"code": EXAMPLE_CODE, "input": "{{ nodes.order.output }}"},
    }

    def __init__(self, *, sandbox: str | None = "bwrap", allow_unsandboxed: bool = False) -> None:
        self.sandbox = Sandbox(sandbox, allow_unsandboxed=allow_unsandboxed)

    async def run(self, ctx: NodeContext, config: CodeConfig) -> Any:
        sandboxed = await self.sandbox.sandboxed()
        network = ctx.network
        if config.allow_network and (
            not network.allow_private or network.allowlist or network.workspace_allowlist
        ):
            raise NodeError(
                "allow_network is refused here: a snippet's own connections cannot be checked "
                "against the private-address guard or the allowlist, so it needs "
                "CONVEYOR_ALLOW_PRIVATE_NETWORK=true and no allowlist",
                non_retryable=True,
            )
        if not sandboxed:
            ctx.log.warning(
                "no sandbox: this snippet runs with resource limits only, not isolated from "
                "the host's files and network (CONVEYOR_ALLOW_UNSANDBOXED_CODE=true)"
            )
        limits = Limits(
            timeout=config.timeout,
            cpu_seconds=config.cpu_seconds,
            memory_mb=config.memory_mb,
            max_output_bytes=config.max_output_bytes,
            network=config.allow_network,
        )
        request = {"code": config.code, "input": config.input}
        finished = await self.sandbox.run(request, limits, sandboxed=sandboxed)
        _log(ctx, finished)
        return outcome(finished, limits)


def _log(ctx: NodeContext, finished: Finished) -> None:
    for line in finished.log.decode(errors="replace").splitlines():
        ctx.log.info(line)
    if finished.log_dropped:
        ctx.log.warning(f"{finished.log_dropped} more bytes of printed output dropped")


def outcome(finished: Finished, limits: Limits) -> Any:
    """The step's output, or the NodeError that says why there is none."""
    envelope = finished.envelope()
    if envelope is not None and envelope["ok"]:
        return envelope.get("output")
    if envelope is not None:
        raise _reported(str(envelope.get("kind")), str(envelope.get("message")), limits)
    raise _ended(finished, limits)


def _reported(kind: str, message: str, limits: Limits) -> NodeError:
    """A failure the snippet's own process reported."""
    known = {
        "syntax": f"the code has a syntax error: {message}",
        "contract": message,
        "output": message,
        "memory": f"memory limit of {limits.memory_mb} MB exceeded (memory_mb)\n{message}",
        "processes": f"process limit of {limits.processes} reached (a fork bomb?)\n{message}",
        "network": "network is disabled for code nodes (set allow_network: true where the "
        f"operator allows it)\n{message}",
        "too_large": _too_large(limits),
        "exception": f"the code raised an exception\n{message}",
    }
    return NodeError(known.get(kind, message), non_retryable=True)


def _too_large(limits: Limits) -> str:
    return f"output larger than {limits.max_output_bytes} bytes (max_output_bytes)"


def _ended(finished: Finished, limits: Limits) -> NodeError:
    """A process that ended without a report: killed by a limit, by the worker, or crashed."""
    if finished.overflowed:
        return NodeError(_too_large(limits), non_retryable=True)
    if finished.timed_out:
        seconds = limits.timeout.total_seconds()
        return NodeError(f"wall-clock timeout of {seconds:g}s exceeded", non_retryable=True)
    if finished.signal == signal.SIGXCPU:
        return NodeError(
            f"CPU time limit of {limits.cpu_seconds}s exceeded (cpu_seconds)", non_retryable=True
        )
    if finished.signal == signal.SIGKILL:
        return NodeError(
            f"the code's process was killed: CPU time limit of {limits.cpu_seconds}s or memory "
            f"limit of {limits.memory_mb} MB exceeded",
            non_retryable=True,
        )
    if finished.signal == signal.SIGXFSZ:
        return NodeError(
            f"file size limit of {limits.file_bytes} bytes exceeded", non_retryable=True
        )
    said = finished.log.decode(errors="replace").strip()[-2000:]
    how = (
        f"died of signal {signal.Signals(finished.signal).name}"
        if finished.signal and finished.signal in signal.Signals._value2member_map_
        else f"exited with status {finished.exit_code}"
    )
    # Without the snippet's report this may be the sandbox failing: worth another attempt.
    return NodeError(f"the code's process {how} without a result" + (f": {said}" if said else ""))
