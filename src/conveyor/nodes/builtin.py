"""The built-in node types, assembled into a registry."""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.nodes.addresses import parse_allowlist
from conveyor.nodes.agent import LlmAgent
from conveyor.nodes.base import NetworkPolicy
from conveyor.nodes.chat import ChatPost
from conveyor.nodes.code import Code
from conveyor.nodes.control import Condition, Fail, StopExecution, Switch, Wait, WaitForEvent
from conveyor.nodes.data import Transform
from conveyor.nodes.database import DbQuery
from conveyor.nodes.fields import SetFields
from conveyor.nodes.foreach import Foreach
from conveyor.nodes.http import HttpRequest
from conveyor.nodes.items import Aggregate, Filter, Split
from conveyor.nodes.llm import LlmChat
from conveyor.nodes.llm_prices import PriceTable
from conveyor.nodes.mail import EmailSend
from conveyor.nodes.merge import Merge
from conveyor.nodes.messaging import Notify, TaskCreate
from conveyor.nodes.registry import Registry
from conveyor.nodes.workflow import WorkflowCall


def build_registry(
    *,
    allow_private_network: bool = False,
    allow_unsandboxed_code: bool = False,
    outbound_allowlist: Iterable[str] = (),
    plugins: Iterable[str] = (),
    entry_points: bool = True,
    llm_prices: PriceTable | None = None,
) -> Registry:
    """The registry every interface uses: built-ins, entry points, then plugin modules.

    ``allow_unsandboxed_code``: run code nodes with resource limits only where bubblewrap
    is missing or unusable (CONVEYOR_ALLOW_UNSANDBOXED_CODE); otherwise they are refused.
    ``llm_prices`` turns LLM tokens into money (``CONVEYOR_LLM_PRICES``).
    ``allow_private_network`` and ``outbound_allowlist`` make the policy every step's
    outbound connections follow (``ctx.network``); a malformed allowlist entry raises
    InputError here, at startup."""
    network = NetworkPolicy(
        allow_private=allow_private_network, allowlist=tuple(outbound_allowlist)
    )
    parse_allowlist(network.allowlist)
    registry = Registry(
        [
            HttpRequest(),
            Condition(),
            Switch(),
            Wait(),
            WaitForEvent(),
            Transform(),
            DbQuery(),
            Notify(),
            TaskCreate(),
            EmailSend(),
            ChatPost(),
            Fail(),
            WorkflowCall(),
            SetFields(),
            Filter(),
            Split(),
            Aggregate(),
            Merge(),
            StopExecution(),
            Foreach(),
            LlmChat(prices=llm_prices),
            LlmAgent(prices=llm_prices),
            Code(allow_unsandboxed=allow_unsandboxed_code),
        ],
        network=network,
    )
    if entry_points:
        registry.load_entry_points()
    for module in plugins:
        registry.load_module(module)
    return registry
