"""A NodeContext for running one node type directly against real servers, with credentials
from a plain dictionary (a real CredentialSource, not a mock)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from conveyor.engine.steps import check_config
from conveyor.errors import NodeError
from conveyor.nodes.base import Credential, NetworkPolicy, NodeContext, NodeType

LOCAL = NetworkPolicy(allow_private=True)


class Vault:
    """Credentials by name: ``Vault(mail=("smtp", {...}))``."""

    def __init__(self, **found: tuple[str, dict[str, Any]]) -> None:
        self.found = {name: Credential(name, kind, data) for name, (kind, data) in found.items()}

    async def get(self, name: str) -> Credential:
        if name not in self.found:
            raise NodeError(f"credential '{name}' does not exist", non_retryable=True)
        return self.found[name]


class NoServices:
    """The runtime services a messaging node never needs: any use fails the test."""

    async def notify(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        raise AssertionError("notify is not used here")

    async def start_child(self, *args: Any) -> str:
        raise AssertionError("start_child is not used here")

    async def credentials(self, workspace_id: str) -> list[Credential]:
        raise AssertionError("credentials come from the Vault")


def context(
    vault: Vault,
    *,
    attempt: int = 1,
    network: NetworkPolicy = LOCAL,
    execution_id: str = "exec-1",
    node_id: str = "step",
) -> NodeContext:
    return NodeContext(
        execution_id=execution_id,
        workflow_id="wf-1",
        node_id=node_id,
        attempt=attempt,
        services=NoServices(),
        clock=lambda: datetime.now(UTC),
        credentials=vault,
        network=network,
    )


async def run(node_type: NodeType, ctx: NodeContext, config: dict[str, Any]) -> Any:
    """Validate ``config`` as the runner does, then run the node once."""
    return await node_type.run(ctx, check_config(node_type, config))
