"""Unit tests for the node registry and the node type contract (node decorator, NodeType)."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from conveyor.errors import InputError
from conveyor.nodes.base import (
    EmptyConfig,
    FunctionNode,
    NodeContext,
    NodeType,
    StepLog,
    Usage,
    node,
)
from conveyor.nodes.builtin import build_registry
from conveyor.nodes.registry import Registry


class Echo(NodeType):
    name = "echo"


class Shout(NodeType):
    name = "shout"


class GreetConfig(BaseModel):
    who: str


class _Services:
    async def notify(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        return "n1"

    async def create_task(self, execution_id: str, node_id: str, payload: dict[str, Any]) -> str:
        return "t1"


def _context() -> NodeContext:
    return NodeContext(
        execution_id="e1",
        workflow_id="w1",
        node_id="greet",
        attempt=1,
        services=_Services(),
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_registers_and_looks_up_node_types() -> None:
    echo = Echo()
    registry = Registry([echo, Shout()])
    assert registry.get("echo") is echo
    assert registry.get("nope") is None
    assert "shout" in registry
    assert "nope" not in registry
    assert registry.names() == ["echo", "shout"]


def test_register_returns_the_node_type() -> None:
    echo = Echo()
    assert Registry().register(echo) is echo


def test_duplicate_names_are_rejected() -> None:
    registry = Registry([Echo()])
    with pytest.raises(InputError, match="'echo' is already registered"):
        registry.register(Echo())


def test_duplicate_names_in_the_constructor_are_rejected() -> None:
    with pytest.raises(InputError, match="already registered"):
        Registry([Echo(), Echo()])


def test_a_node_type_without_a_name_is_rejected() -> None:
    with pytest.raises(InputError, match="has no name"):
        Registry([NodeType()])


def test_registries_are_independent_objects() -> None:
    first = Registry([Echo()])
    second = Registry()
    assert "echo" in first
    assert "echo" not in second


def test_node_decorator_makes_a_node_type() -> None:
    @node("greet", config=GreetConfig, branches=["hi", "bye"])
    def greet(ctx: NodeContext, config: GreetConfig) -> str:
        """Say hello.

        More text that is not part of the description.
        """
        return f"hi {config.who}"

    assert isinstance(greet, NodeType)
    assert isinstance(greet, FunctionNode)
    assert greet.name == "greet"
    assert greet.config_model is GreetConfig
    assert greet.branches({}) == frozenset({"hi", "bye"})
    assert greet.description == "Say hello."


def test_node_decorator_defaults() -> None:
    @node("plain", description="explicit")
    def plain(ctx: NodeContext, config: Any) -> None:
        """Ignored because a description is given."""

    assert plain.config_model is EmptyConfig
    assert plain.branches({}) is None
    assert plain.description == "explicit"


def test_base_node_type_has_no_branches_and_no_run() -> None:
    assert Echo().branches({}) is None
    assert Echo().config_model is EmptyConfig


async def test_base_node_type_run_is_not_implemented() -> None:
    with pytest.raises(NotImplementedError):
        await Echo().run(_context(), None)


async def test_function_node_runs_async_functions() -> None:
    @node("greet", config=GreetConfig)
    async def greet(ctx: NodeContext, config: GreetConfig) -> str:
        ctx.report_usage(api_calls=1)
        return f"hi {config.who} from {ctx.node_id}"

    ctx = _context()
    assert await greet.run(ctx, GreetConfig(who="Ada")) == "hi Ada from greet"
    assert ctx.usage.as_dict() == {"tokens": 0, "api_calls": 1}


async def test_function_node_runs_sync_functions() -> None:
    @node("greet", config=GreetConfig)
    def greet(ctx: NodeContext, config: GreetConfig) -> str:
        ctx.log.info("greeting")
        return f"hi {config.who}"

    ctx = _context()
    assert await greet.run(ctx, GreetConfig(who="Ada")) == "hi Ada"
    assert [line["message"] for line in ctx.log.lines] == ["greeting"]


def test_node_context_idempotency_key_and_clock() -> None:
    ctx = _context()
    assert ctx.idempotency_key == "e1:greet"
    assert ctx.now() == datetime(2026, 1, 1, tzinfo=UTC)


def test_usage_adds_up() -> None:
    usage = Usage()
    usage.add(Usage(tokens=3, api_calls=1))
    usage.add(Usage(tokens=2))
    assert usage.as_dict() == {"tokens": 5, "api_calls": 1}


def test_step_log_keeps_levels_in_order() -> None:
    log = StepLog()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [(line["level"], line["message"]) for line in log.lines] == [
        ("debug", "d"),
        ("info", "i"),
        ("warning", "w"),
        ("error", "e"),
    ]


def _plugin_module() -> types.ModuleType:
    module = types.ModuleType("my_plugin")

    @node("plugin.one")
    def one(ctx: NodeContext, config: Any) -> int:
        return 1

    @node("plugin.two")
    def two(ctx: NodeContext, config: Any) -> int:
        return 2

    module.one = one  # type: ignore[attr-defined]
    module.two = two  # type: ignore[attr-defined]
    module.Echo = Echo  # type: ignore[attr-defined]
    module.helper = lambda: None  # type: ignore[attr-defined]
    module.shout = Shout()  # type: ignore[attr-defined]
    return module


def test_load_module_registers_node_type_instances() -> None:
    registry = Registry()
    names = registry.load_module(_plugin_module())
    assert sorted(names) == ["plugin.one", "plugin.two", "shout"]
    assert registry.names() == ["plugin.one", "plugin.two", "shout"]
    assert "echo" not in registry


def test_load_module_rejects_names_already_registered() -> None:
    registry = Registry([Shout()])
    with pytest.raises(InputError, match="'shout' is already registered"):
        registry.load_module(_plugin_module())


def test_load_module_without_node_types_is_an_input_error() -> None:
    module = types.ModuleType("empty_plugin")
    module.value = 42  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="'empty_plugin' defines no node types"):
        Registry().load_module(module)


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("transfrom", "transform"),
        ("http.requst", "http.request"),
        ("http", "http.request"),
        ("conditon", "condition"),
        ("notfy", "notify"),
        ("wait_for", "wait_for_event"),
        ("foreah", "foreach"),
        ("zzzzzz", None),
    ],
)
def test_suggest_a_close_name(typo: str, expected: str | None) -> None:
    registry = build_registry(entry_points=False)
    assert registry.suggest(typo) == expected


def test_built_in_registry_holds_the_built_in_node_types() -> None:
    registry = build_registry(entry_points=False)
    assert registry.names() == [
        "aggregate",
        "chat.post",
        "code",
        "condition",
        "db.query",
        "email.send",
        "fail",
        "filter",
        "foreach",
        "http.request",
        "llm.agent",
        "llm.chat",
        "merge",
        "notify",
        "set",
        "split",
        "stop",
        "switch",
        "task.create",
        "transform",
        "wait",
        "wait_for_event",
        "workflow.call",
    ]
