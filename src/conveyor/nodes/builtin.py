"""The built-in node types, assembled into a registry."""

from __future__ import annotations

from collections.abc import Iterable

from conveyor.nodes.base import NetworkPolicy
from conveyor.nodes.chat import ChatPost
from conveyor.nodes.control import Condition, Fail, Switch, Wait, WaitForEvent
from conveyor.nodes.data import Transform
from conveyor.nodes.database import DbQuery
from conveyor.nodes.http import HttpRequest
from conveyor.nodes.mail import EmailSend
from conveyor.nodes.messaging import Notify, TaskCreate
from conveyor.nodes.registry import Registry
from conveyor.nodes.workflow import WorkflowCall


def build_registry(
    *,
    allow_private_network: bool = False,
    plugins: Iterable[str] = (),
    entry_points: bool = True,
) -> Registry:
    """The registry every interface uses: built-ins, entry points, then plugin modules."""
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
            TaskCreate(),
            EmailSend(),
            ChatPost(),
            Fail(),
            WorkflowCall(),
        ],
        network=NetworkPolicy(allow_private=allow_private_network),
    )
    if entry_points:
        registry.load_entry_points()
    for module in plugins:
        registry.load_module(module)
    return registry
