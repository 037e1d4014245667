"""Data and flow node types in real workflows on both backends: set, filter, split,
aggregate, merge (and ``wait_for: first``), stop, foreach (inline and over child executions)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel

from conveyor.app import Conveyor, RuntimeServices
from conveyor.engine.interfaces import SystemClock
from conveyor.errors import DefinitionError
from conveyor.nodes.base import NodeContext, node
from conveyor.nodes.foreach import Foreach, ForeachConfig
from conveyor.worker import Worker

QUICK = 5.0  # seconds: only a hang or a real sleep crosses it


@dataclass
class Finished:
    execution: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def status(self) -> str:
        return str(self.execution["status"])

    def step(self, node_id: str) -> dict[str, Any]:
        rows = [s for s in self.execution["steps"] if s["node_id"] == node_id]
        assert rows, f"no step row for {node_id}"
        return max(rows, key=lambda s: s["attempt"])

    def output(self, node_id: str) -> Any:
        return self.step(node_id)["output"]


async def execute(app: Conveyor, name: str, *nodes: dict[str, Any], input: Any = None) -> Finished:
    await app.apply({"name": name, "nodes": list(nodes)})
    execution_id = (await app.execute(name, input or {})).execution_id
    worker = Worker(app.store, app.registry, SystemClock())
    await asyncio.wait_for(worker.run_one(execution_id), timeout=60)
    execution = await app.store.get_execution(app.workspace_id, execution_id)
    return Finished(execution, await app.store.events_after(execution_id))


class Track(BaseModel):
    seconds: float = 0.0
    value: Any = None
    fail: bool = False


@dataclass
class Tracker:
    """A node type that records how many of its steps (or items) ran at once."""

    running: int = 0
    most: int = 0
    seen: list[Any] = field(default_factory=list)

    def register(self, app: Conveyor) -> None:
        @node("test.track", config=Track)
        async def track(ctx: NodeContext, config: Track) -> Any:
            self.running += 1
            self.most = max(self.most, self.running)
            try:
                await asyncio.sleep(config.seconds)
            finally:
                self.running -= 1
            self.seen.append(config.value)
            if config.fail:
                from conveyor.errors import NodeError

                raise NodeError(f"no good: {config.value}", non_retryable=True)
            return config.value

        app.registry.register(track)


@pytest.fixture
def tracker(conveyor: Conveyor) -> Tracker:
    found = Tracker()
    found.register(conveyor)
    return found


PEOPLE = [
    {"name": "Ada", "age": 36, "email": "ada@example.com", "tags": ["math"]},
    {"name": "Bob", "age": 17, "email": "bob@example.org", "tags": []},
    {"name": "Cy", "age": 52, "email": "cy@example.com"},
]


# -- set ---------------------------------------------------------------------------------------


async def test_set_converts_types_sets_nested_fields_and_keeps_what_it_is_told(
    conveyor: Conveyor,
) -> None:
    source = {"id": "src", "type": "transform", "config": {"output": "{{ input }}"}}
    fields = [
        {"name": "age", "value": "{{ input.age }}", "type": "integer"},
        {"name": "address.city", "value": "Oslo"},
        {"name": "vip", "value": "yes", "type": "boolean"},
        {"name": "score", "value": "2.5", "type": "number"},
        {"name": "label", "value": "{{ input.age }}", "type": "string"},
        {"name": "tags", "value": '["a", "b"]', "type": "array"},
        {"name": "meta", "value": '{"k": 1}', "type": "object"},
    ]
    finished = await execute(
        conveyor,
        "set-fields",
        source,
        *(
            {
                "id": f"keep_{keep}",
                "type": "set",
                "needs": "src",
                "config": {
                    "from": "{{ nodes.src.output }}",
                    "keep": keep,
                    "fields": fields,
                    **({"keep_fields": ["name"]} if keep == "listed" else {}),
                },
            }
            for keep in ("all", "none", "listed")
        ),
        input={"name": "Ada", "age": "36", "email": "ada@example.com"},
    )
    assert finished.status == "succeeded"
    assigned = {
        "age": 36,
        "address": {"city": "Oslo"},
        "vip": True,
        "score": 2.5,
        "label": "36",
        "tags": ["a", "b"],
        "meta": {"k": 1},
    }
    assert finished.output("keep_all") == {"name": "Ada", "email": "ada@example.com", **assigned}
    assert finished.output("keep_none") == assigned
    assert finished.output("keep_listed") == {"name": "Ada", **assigned}


async def test_set_names_the_field_a_value_does_not_convert_for_and_does_not_retry(
    conveyor: Conveyor,
) -> None:
    finished = await execute(
        conveyor,
        "set-bad",
        {
            "id": "s",
            "type": "set",
            "config": {
                "fields": [
                    {"name": "ok", "value": 1},
                    {"name": "order.total", "value": "{{ input.total }}", "type": "number"},
                ]
            },
        },
        input={"total": "twelve"},
    )
    assert finished.status == "failed"
    step = finished.step("s")
    assert step["attempt"] == 1
    assert step["error"]["message"] == ('config.fields[1] (order.total): "twelve" is not a number')
    assert step["error"]["non_retryable"] is True


# -- filter, split, aggregate ------------------------------------------------------------------


async def test_filter_keeps_items_meeting_all_or_any_structured_conditions(
    conveyor: Conveyor,
) -> None:
    conditions = [
        {"field": "age", "op": "gte", "value": 18},
        {"field": "email", "op": "ends_with", "value": "@EXAMPLE.com", "ignore_case": True},
    ]
    finished = await execute(
        conveyor,
        "filter",
        {
            "id": "all",
            "type": "filter",
            "config": {"items": "{{ input.people }}", "conditions": conditions},
        },
        {
            "id": "any",
            "type": "filter",
            "config": {
                "items": "{{ input.people }}",
                "combine": "any",
                "conditions": [
                    {"field": "name", "op": "matches", "value": "^B"},
                    {"field": "tags", "op": "contains", "value": "math"},
                ],
            },
        },
        {
            "id": "none_tagged",
            "type": "filter",
            "config": {
                "items": "{{ input.people }}",
                "conditions": [{"field": "tags", "op": "empty"}],
            },
        },
        {
            "id": "named",
            "type": "filter",
            "config": {
                "items": "{{ input.people }}",
                "conditions": [
                    {"field": "name", "op": "in", "value": ["Cy", "Zed"], "negate": True}
                ],
            },
        },
        input={"people": PEOPLE},
    )
    assert finished.status == "succeeded"
    assert finished.output("all") == {"kept": [PEOPLE[0], PEOPLE[2]], "dropped_count": 1}
    assert finished.output("any") == {"kept": [PEOPLE[0], PEOPLE[1]], "dropped_count": 1}
    assert finished.output("none_tagged")["kept"] == [PEOPLE[1], PEOPLE[2]]
    assert [p["name"] for p in finished.output("named")["kept"]] == ["Ada", "Bob"]


async def test_a_bad_condition_is_refused_when_the_workflow_is_saved(conveyor: Conveyor) -> None:
    with pytest.raises(DefinitionError) as raised:
        await conveyor.apply(
            {
                "name": "bad-filter",
                "nodes": [
                    {
                        "id": "f",
                        "type": "filter",
                        "config": {
                            "items": [],
                            "conditions": [{"field": "a", "op": "matches", "value": "("}],
                        },
                    }
                ],
            }
        )
    assert "invalid regular expression" in str(raised.value)


async def test_split_turns_a_list_field_into_items_and_chunks(conveyor: Conveyor) -> None:
    order = {"order_id": 7, "lines": [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]}
    finished = await execute(
        conveyor,
        "split",
        {
            "id": "lines",
            "type": "split",
            "config": {"from": "{{ input }}", "field": "lines", "keep_fields": ["order_id"]},
        },
        {"id": "chunks", "type": "split", "config": {"from": "{{ input.lines }}", "size": 2}},
        {"id": "bad", "type": "split", "config": {"from": "{{ input }}", "field": "order_id"}},
        input=order,
    )
    assert finished.output("lines") == {
        "items": [{"sku": s, "order_id": 7} for s in "abc"],
        "count": 3,
    }
    assert finished.output("chunks") == {
        "chunks": [[{"sku": "a"}, {"sku": "b"}], [{"sku": "c"}]],
        "count": 3,
    }
    assert finished.step("bad")["error"]["message"] == (
        "config.field: 'order_id' of item 0 holds a number, not a list"
    )
    assert finished.status == "failed"


async def test_aggregate_collects_a_field_or_groups_with_metrics(conveyor: Conveyor) -> None:
    orders = [
        {"customer": "ada", "amount": 10},
        {"customer": "bob", "amount": 5},
        {"customer": "ada", "amount": 20},
        {"customer": "bob"},
    ]
    finished = await execute(
        conveyor,
        "aggregate",
        {
            "id": "amounts",
            "type": "aggregate",
            "config": {"items": "{{ input.orders }}", "field": "amount"},
        },
        {
            "id": "per_customer",
            "type": "aggregate",
            "config": {
                "items": "{{ input.orders }}",
                "group_by": "customer",
                "metrics": [
                    {"op": "count"},
                    {"op": "sum", "field": "amount", "as": "total"},
                    {"op": "avg", "field": "amount"},
                    {"op": "min", "field": "amount"},
                    {"op": "max", "field": "amount"},
                    {"op": "list", "field": "amount"},
                ],
            },
        },
        {
            "id": "bad_sum",
            "type": "aggregate",
            "config": {
                "items": [{"n": 1}, {"n": "two"}],
                "metrics": [{"op": "sum", "field": "n"}],
            },
        },
        input={"orders": orders},
    )
    assert finished.output("amounts") == {"values": [10, 5, 20], "count": 3}
    assert finished.output("per_customer") == {
        "groups": [
            {
                "customer": "ada",
                "count": 2,
                "total": 30,
                "avg_amount": 15.0,
                "min_amount": 10,
                "max_amount": 20,
                "list_amount": [10, 20],
            },
            {
                "customer": "bob",
                "count": 2,
                "total": 5,
                "avg_amount": 5.0,
                "min_amount": 5,
                "max_amount": 5,
                "list_amount": [5],
            },
        ]
    }
    assert (
        finished.step("bad_sum")["error"]["message"] == "metric sum of 'n': \"two\" is not a number"
    )


# -- merge -------------------------------------------------------------------------------------


CUSTOMERS = [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Bob"}, {"id": 3, "name": "Cy"}]
ORDERS = [{"id": 1, "total": 10}, {"id": 1, "total": 12}, {"id": 4, "total": 99}]


def _merge(node_id: str, **config: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "merge",
        "needs": ["customers", "orders"],
        "config": {
            "inputs": ["{{ nodes.customers.output }}", "{{ nodes.orders.output }}"],
            **config,
        },
    }


async def test_merge_appends_zips_and_joins_by_key(conveyor: Conveyor) -> None:
    finished = await execute(
        conveyor,
        "merge",
        {"id": "customers", "type": "transform", "config": {"output": CUSTOMERS}},
        {"id": "orders", "type": "transform", "config": {"output": ORDERS}},
        _merge("append"),
        _merge("position", mode="position"),
        _merge("position_outer", mode="position", join="outer"),
        *(_merge(f"key_{j}", mode="by_key", key="id", join=j) for j in ("inner", "left", "outer")),
    )
    assert finished.status == "succeeded"
    assert finished.output("append") == {"items": CUSTOMERS + ORDERS, "count": 6}
    assert finished.output("position")["items"] == [
        {"id": 1, "name": "Ada", "total": 10},
        {"id": 1, "name": "Bob", "total": 12},
        {"id": 4, "name": "Cy", "total": 99},
    ]
    assert finished.output("position_outer")["count"] == 3
    ada_orders = [{"id": 1, "name": "Ada", "total": 10}, {"id": 1, "name": "Ada", "total": 12}]
    assert finished.output("key_inner")["items"] == ada_orders
    assert finished.output("key_left")["items"] == [*ada_orders, CUSTOMERS[1], CUSTOMERS[2]]
    assert finished.output("key_outer")["items"] == [
        *ada_orders,
        CUSTOMERS[1],
        CUSTOMERS[2],
        ORDERS[2],
    ]


async def test_merge_counts_a_skipped_branch_as_no_items(conveyor: Conveyor) -> None:
    finished = await execute(
        conveyor,
        "merge-branches",
        {"id": "check", "type": "condition", "config": {"if": "{{ input.big }}"}},
        {"id": "big", "type": "transform", "needs": "check.true", "config": {"output": ["B"]}},
        {"id": "small", "type": "transform", "needs": "check.false", "config": {"output": ["s"]}},
        {
            "id": "both",
            "type": "merge",
            "needs": ["big", "small"],
            "config": {"inputs": ["{{ nodes.big.output }}", "{{ nodes.small.output }}"]},
        },
        input={"big": False},
    )
    assert finished.status == "succeeded"
    assert finished.step("big")["status"] == "skipped"
    assert finished.output("both") == {"items": ["s"], "count": 1}


async def test_wait_for_first_merges_as_soon_as_one_input_arrives(
    conveyor: Conveyor, tracker: Tracker
) -> None:
    finished = await execute(
        conveyor,
        "race",
        {"id": "fast", "type": "test.track", "config": {"value": ["fast"]}},
        {"id": "slow", "type": "test.track", "config": {"seconds": 1.0, "value": ["slow"]}},
        {
            "id": "first",
            "type": "merge",
            "needs": ["fast", "slow"],
            "wait_for": "first",
            "config": {"inputs": ["{{ nodes.fast.output }}", "{{ nodes.slow.output }}"]},
        },
    )
    assert finished.status == "succeeded", finished.execution["error"]
    assert finished.output("first") == {"items": ["fast"], "count": 1}
    assert finished.step("first")["finished_at"] < finished.step("slow")["finished_at"]
    started = [e for e in finished.events if e["type"] == "step.started"]
    assert [e["data"]["node_id"] for e in started].count("first") == 1


# -- stop --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
async def test_stop_ends_the_execution_skipping_pending_and_cancelling_running_steps(
    conveyor: Conveyor, tracker: Tracker, status: str
) -> None:
    began = time.monotonic()
    finished = await execute(
        conveyor,
        f"stop-{status}",
        {"id": "slow", "type": "test.track", "config": {"seconds": 30, "value": 1}},
        {"id": "after_slow", "type": "transform", "needs": "slow", "config": {"output": 1}},
        {"id": "approval", "type": "wait_for_event", "config": {"event": "approved"}},
        {"id": "check", "type": "condition", "needs": "gate", "config": {"if": True}},
        # Stop comes once the others run or wait.
        {"id": "gate", "type": "test.track", "config": {"seconds": 0.3}},
        {
            "id": "halt",
            "type": "stop",
            "needs": "check.true",
            "config": {"status": status, "message": "nothing to do today"},
        },
        {"id": "after_halt", "type": "transform", "needs": "halt", "config": {"output": 2}},
    )
    assert time.monotonic() - began < QUICK + 10
    assert finished.status == status
    assert finished.step("halt")["status"] == "succeeded"
    assert finished.step("slow")["status"] == "cancelled"
    assert finished.step("approval")["status"] == "cancelled"
    assert finished.step("after_slow")["status"] == "skipped"
    assert finished.step("after_halt")["status"] == "skipped"
    execution = finished.execution
    if status == "succeeded":
        assert execution["error"] is None
        assert execution["result"]["halt"] == {
            "status": "succeeded",
            "message": "nothing to do today",
        }
    else:
        assert execution["error"] == {
            "type": "Stopped",
            "message": "nothing to do today",
            "node_id": "halt",
        }
    assert [e["type"] for e in finished.events][-1] == f"execution.{status}"


# -- foreach -----------------------------------------------------------------------------------


async def test_foreach_inline_renders_per_item_keeps_order_and_limits_parallelism(
    conveyor: Conveyor, tracker: Tracker
) -> None:
    # Later items finish first, so the order of results is the order of items, not of ends.
    finished = await execute(
        conveyor,
        "each-inline",
        {
            "id": "each",
            "type": "foreach",
            "config": {
                "items": "{{ input.numbers }}",
                "parallelism": 3,
                "node": {
                    "type": "test.track",
                    "config": {
                        "seconds": "{{ 0.3 - index * 0.03 }}",
                        "value": "{{ item * 10 }}-{{ index }}-{{ input.tag }}",
                    },
                },
            },
        },
        input={"numbers": list(range(8)), "tag": "t"},
    )
    assert finished.status == "succeeded"
    output = finished.output("each")
    assert output["results"] == [f"{n * 10}-{n}-t" for n in range(8)]
    assert (output["count"], output["failed_count"]) == (8, 0)
    assert tracker.most == 3
    assert tracker.seen != output["results"]  # they did finish out of order


async def test_foreach_inline_item_errors_fail_the_step_or_are_kept(
    conveyor: Conveyor, tracker: Tracker
) -> None:
    inner = {"type": "test.track", "config": {"value": "{{ item }}", "fail": "{{ item == 2 }}"}}
    finished = await execute(
        conveyor,
        "each-errors",
        {
            "id": "strict",
            "type": "foreach",
            "retry": {"max_attempts": 1},
            "on_error": "continue",
            "config": {"items": [1, 2, 3], "node": inner},
        },
        {
            "id": "lenient",
            "type": "foreach",
            "config": {"items": [1, 2, 3], "node": inner, "on_item_error": "continue"},
        },
        {
            "id": "typed_per_item",
            "type": "foreach",
            "on_error": "continue",
            "config": {"items": ["no.such"], "node": {"type": "{{ item }}"}},
        },
    )
    typed = finished.step("typed_per_item")
    assert typed["error"]["message"] == "item 0: config.node.type: unknown node type 'no.such'"
    assert typed["attempt"] == 1
    assert finished.step("strict")["error"]["message"] == "item 1: no good: 2"
    assert finished.output("lenient") == {
        "results": [1, {"error": {"type": "NodeError", "message": "no good: 2"}}, 3],
        "count": 3,
        "failed_count": 1,
    }


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        ({"type": "transfrom"}, "unknown node type 'transfrom' (did you mean 'transform'?)"),
        ({"type": "wait", "config": {"duration": "1s"}}, "a wait node waits"),
        ({"type": "transform", "config": {"outputs": 1}}, "Extra inputs are not permitted"),
    ],
)
async def test_foreach_inline_node_is_checked_when_the_workflow_is_saved(
    conveyor: Conveyor, inner: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError) as raised:
        await conveyor.apply(
            {
                "name": "each-bad",
                "nodes": [
                    {"id": "each", "type": "foreach", "config": {"items": [], "node": inner}}
                ],
            }
        )
    problems = raised.value.problems
    assert any(message in p.message for p in problems), problems
    assert all(p.path.startswith("config.node.") for p in problems)


CHILD = {
    "name": "child-track",
    "nodes": [
        {
            "id": "work",
            "type": "test.track",
            "config": {"seconds": 0.2, "value": {"doubled": "{{ input.n * 2 }}"}},
        }
    ],
}


async def test_foreach_over_a_workflow_runs_children_in_order_within_the_limit(
    conveyor: Conveyor, tracker: Tracker
) -> None:
    await conveyor.apply(CHILD)
    finished = await execute(
        conveyor,
        "each-child",
        {
            "id": "each",
            "type": "foreach",
            "config": {"items": "{{ input.items }}", "workflow": "child-track", "parallelism": 2},
        },
        input={"items": [{"n": n} for n in range(5)]},
    )
    assert finished.status == "succeeded", finished.execution["error"]
    output = finished.output("each")
    assert output["results"] == [{"work": {"doubled": n * 2}} for n in range(5)]
    assert tracker.most == 2
    parent_id = finished.execution["id"]
    children = []
    for child_id in output["executions"]:
        child = await conveyor.store.get_execution(conveyor.workspace_id, child_id)
        children.append(child)
    assert [c["input"] for c in children] == [{"n": n} for n in range(5)]
    assert {c["parent_execution_id"] for c in children} == {parent_id}
    assert {c["status"] for c in children} == {"succeeded"}


async def test_foreach_over_a_workflow_again_in_the_same_step_reuses_finished_children(
    conveyor: Conveyor, tracker: Tracker
) -> None:
    """What a retried or recovered attempt does: the same keys find the same children, whose
    stored results are reused; no item runs twice."""
    await conveyor.apply(CHILD)
    finished = await execute(
        conveyor,
        "each-again",
        {
            "id": "each",
            "type": "foreach",
            "config": {"items": [{"n": 1}, {"n": 2}], "workflow": "child-track"},
        },
    )
    first = finished.output("each")
    runs = len(tracker.seen)
    ctx = NodeContext(
        execution_id=finished.execution["id"],
        workflow_id=finished.execution["workflow_id"],
        node_id="each",
        attempt=2,
        services=RuntimeServices(conveyor.store),
        clock=SystemClock().now,
    )
    config = ForeachConfig(items=[{"n": 1}, {"n": 2}], workflow="child-track")
    again = await asyncio.wait_for(Foreach().run(ctx, config), timeout=QUICK)
    assert again == first
    assert len(tracker.seen) == runs == 2


async def test_a_failing_child_fails_foreach_naming_the_item(
    conveyor: Conveyor, tracker: Tracker
) -> None:
    await conveyor.apply(
        {
            "name": "picky",
            "nodes": [
                {
                    "id": "boom",
                    "type": "test.track",
                    "config": {"value": "{{ input }}", "fail": "{{ input == 'b' }}"},
                }
            ],
        }
    )
    finished = await execute(
        conveyor,
        "each-picky",
        {
            "id": "each",
            "type": "foreach",
            "config": {"items": ["a", "b", "c"], "workflow": "picky"},
        },
    )
    assert finished.status == "failed"
    message = finished.step("each")["error"]["message"]
    assert message.startswith("item 1: child execution ")
    assert message.endswith("ended failed: no good: b")


async def test_foreach_over_a_missing_workflow_fails_at_once_naming_it(conveyor: Conveyor) -> None:
    finished = await execute(
        conveyor,
        "each-missing",
        {"id": "each", "type": "foreach", "config": {"items": [1], "workflow": "nope"}},
    )
    assert finished.status == "failed"
    step = finished.step("each")
    assert step["attempt"] == 1
    assert step["error"]["message"].startswith("item 0: cannot start workflow 'nope': ")


async def test_each_inline_item_has_its_own_idempotency_key(conveyor: Conveyor) -> None:
    @node("test.key")
    async def key(ctx: NodeContext, config: Any) -> str:
        return ctx.idempotency_key

    conveyor.registry.register(key)
    finished = await execute(
        conveyor,
        "each-key",
        {
            "id": "each",
            "type": "foreach",
            "config": {"items": ["a", "b"], "parallelism": 2, "node": {"type": "test.key"}},
        },
    )
    execution_id = finished.execution["id"]
    keys = finished.output("each")["results"]
    assert keys == [f"{execution_id}:each:0", f"{execution_id}:each:1"]


class Item(BaseModel):
    value: Any = None


async def test_a_retried_inline_foreach_runs_only_the_items_that_had_not_finished(
    conveyor: Conveyor,
) -> None:
    """Each finished inline item is a step checkpoint: when item 2 fails its first try and
    the step is retried, items 0 and 1 are taken from the checkpoints, not run again."""
    runs: dict[Any, int] = {}

    @node("test.once_each", config=Item)
    async def once_each(ctx: NodeContext, config: Item) -> str:
        runs[config.value] = runs.get(config.value, 0) + 1
        if config.value == "c" and runs["c"] == 1:
            raise RuntimeError("c is not ready yet")
        return f"{config.value}:{ctx.attempt}"

    conveyor.registry.register(once_each)
    finished = await execute(
        conveyor,
        "each-resumes",
        {
            "id": "each",
            "type": "foreach",
            "retry": {"max_attempts": 2, "initial_interval": "10ms"},
            "config": {
                "items": ["a", "b", "c"],
                "parallelism": 1,
                "node": {"type": "test.once_each", "config": {"value": "{{ item }}"}},
            },
        },
    )
    assert finished.status == "succeeded", finished.execution["error"]
    assert finished.step("each")["attempt"] == 2
    assert runs == {"a": 1, "b": 1, "c": 2}
    # a and b kept what their first (and only) run returned, in attempt 1.
    assert finished.output("each")["results"] == ["a:1", "b:1", "c:2"]
