"""The built-in node types, assembled into a registry."""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.nodes.agent import LlmAgent
from conveyor.nodes.base import NetworkPolicy
from conveyor.nodes.chat import ChatPost
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
from conveyor.nodes.messaging import Notify
from conveyor.nodes.registry import Registry
from conveyor.nodes.workflow import WorkflowCall


def build_registry(
    *,
    allow_private_network: bool = False,
    plugins: Iterable[str] = (),
    entry_points: bool = True,
    llm_prices: PriceTable | None = None,
) -> Registry:
    """The registry every interface uses: built-ins, entry points, then plugin modules.
    ``llm_prices`` turns LLM tokens into money (``CONVEYOR_LLM_PRICES``)."""
    registry = Registry(
        [
            HttpRequest(allow_private_network=allow_private_network),
            Condition(),
            Switch(),
            Wait(),
            WaitForEvent(),
            Transform(),
            DbQuery(),
            Notify(),
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
        ],
        network=NetworkPolicy(allow_private=allow_private_network),
    )
    if entry_points:
        registry.load_entry_points()
    for module in plugins:
        registry.load_module(module)
    return registry
