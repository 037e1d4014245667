"""Validation of a definition against the registry: every problem, located, at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from conveyor.engine.definition import NODE_ID, WorkflowDefinition, parse_leniently
from conveyor.engine.graph import Graph, find_cycle
from conveyor.engine.inputs import schema_problems
from conveyor.engine.templates import (
    TemplateProblem,
    contains_template,
    node_references,
    reads_variables,
)
from conveyor.engine.triggers import ScheduleSpec, schedule_problems
from conveyor.errors import DefinitionError, Problem
from conveyor.nodes.catalog import literal_fields
from conveyor.nodes.registry import Registry


def validate(data: Any, registry: Registry) -> WorkflowDefinition:
    """Return the definition, or raise DefinitionError listing every problem found."""
    definition, problems = check(data, registry)
    if problems or definition is None:
        raise DefinitionError(problems)
    return definition


def check(data: Any, registry: Registry) -> tuple[WorkflowDefinition | None, list[Problem]]:
    """Every problem of a definition, in one pass; the definition only when there are none."""
    parsed = parse_leniently(data)
    definition = parsed.definition
    problems = list(parsed.problems)
    if definition is None:
        return None, problems
    if definition.input is not None:
        problems += schema_problems(definition.input)
    problems += _node_problems(definition, registry)
    problems += _trigger_problems(definition)
    if not parsed.whole_graph:
        return None, problems
    problems += _edge_problems(definition, registry)
    if not any(p.path.startswith(("needs", "edges")) for p in problems):
        graph = Graph(definition)
        cycle = find_cycle(graph)
        if cycle:
            problems.append(
                Problem(
                    f"the graph has a cycle: {' -> '.join(cycle)}", node_id=cycle[0], path="needs"
                )
            )
        else:
            problems += _template_problems(definition, graph, registry)
    return (None if problems else definition), problems


def _node_problems(definition: WorkflowDefinition, registry: Registry) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for node in definition.nodes:
        # fullmatch: with match, '$' also matches before a trailing newline ("a\n").
        if not NODE_ID.fullmatch(node.id):
            problems.append(
                Problem(
                    "node ids start with a letter or '_' and hold only letters, digits and '_' "
                    "(they are used in templates as nodes.<id>)",
                    node_id=node.id,
                    path="id",
                )
            )
        if node.id in seen:
            problems.append(Problem("duplicate node id", node_id=node.id, path="id"))
        seen.add(node.id)
        node_type = registry.get(node.type)
        if node_type is None:
            hint = registry.suggest(node.type)
            message = f"unknown node type '{node.type}'"
            message += f" (did you mean '{hint}'?)" if hint else ""
            problems.append(Problem(message, node_id=node.id, path="type"))
            continue
        problems += config_problems(node_type.config_model, node.config, node.id)
        for name in sorted(node_type.raw_config):
            problems += _inner_node_problems(
                node.config.get(name), f"config.{name}", node.id, registry
            )
        problems += _literal_problems(node_type.config_model, node.config, node.id)
        if node.timeout is not None and node_type.wait_bound is not None:
            problems.append(
                Problem(
                    f"a step timeout bounds node code, and a {node.type} node runs none while "
                    f"it waits, so this would have no effect: bound the wait with "
                    f"{node_type.wait_bound} instead",
                    node_id=node.id,
                    path="timeout",
                )
            )
    return problems


def _inner_node_problems(value: Any, path: str, node_id: str, registry: Registry) -> list[Problem]:
    """A node run by another (``foreach``'s ``node: {type, config}``): a known type that
    does not wait, with a config that fits it (fields holding templates are checked when
    rendered, per item)."""
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return []
    name = value["type"]
    if contains_template(name):
        return []
    inner = registry.get(name)
    if inner is None:
        hint = registry.suggest(name)
        message = f"unknown node type '{name}'" + (f" (did you mean '{hint}'?)" if hint else "")
        return [Problem(message, node_id=node_id, path=f"{path}.type")]
    if inner.wait_bound is not None:
        return [
            Problem(
                f"a {name} node waits, which a node run inside another cannot do",
                node_id=node_id,
                path=f"{path}.type",
            )
        ]
    config = value.get("config", {})
    if not isinstance(config, dict):
        return []
    return [
        Problem(p.message, node_id=node_id, path=f"{path}.{p.path}")
        for p in config_problems(inner.config_model, config, node_id)
    ]


def _trigger_problems(definition: WorkflowDefinition) -> list[Problem]:
    """A webhook answering with a node's output must name a node of this workflow; a
    schedule must be able to fire."""
    nodes = {node.id for node in definition.nodes}
    problems = []
    for index, trigger in enumerate(definition.triggers):
        if isinstance(trigger, ScheduleSpec):
            problems += [
                Problem(message, path=f"triggers.{index}.{name}")
                for name, message in schedule_problems(trigger)
            ]
        node = getattr(getattr(trigger, "response", None), "node", None)
        if node is not None and node not in nodes:
            problems.append(
                Problem(
                    f"webhook '{trigger.id}' answers with node '{node}', which is not a node "
                    "of this workflow",
                    path=f"triggers.{index}.response.node",
                )
            )
    return problems


def _literal_problems(model: Any, config: dict[str, Any], node_id: str) -> list[Problem]:
    """A template in a field that is never rendered (SQL text) is a mistake to point out:
    it would reach the node as written."""
    problems = []
    for key in sorted(literal_fields(model)):
        value = config.get(key)
        if isinstance(value, str) and reads_variables(value):
            extra = model.model_fields.get(key)
            hint = (extra.json_schema_extra or {}).get("x-template-hint") if extra else None
            problems.append(
                Problem(
                    "this field is used as written and never rendered, so a template here "
                    "would not be filled in" + (f": {hint}" if hint else ""),
                    node_id=node_id,
                    path=f"config.{key}",
                )
            )
    return problems


def config_problems(model: Any, config: dict[str, Any], node_id: str) -> list[Problem]:
    """Problems in a node's config; a field holding a template is checked after rendering."""
    literal = literal_fields(model)
    try:
        model.model_validate(config)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # A field holding a template is checked once rendered; a missing or forbidden
            # field is wrong whatever the templates render to, and so is a literal one.
            structural = err["type"] in ("missing", "extra_forbidden")
            kept = bool(err["loc"]) and err["loc"][0] in literal
            if not structural and not kept and contains_template(err.get("input")):
                continue
            path = ".".join(["config", *(str(p) for p in err["loc"])])
            problems.append(Problem(err["msg"], node_id=node_id, path=path))
        return problems
    return []


@dataclass(frozen=True)
class _Link:
    """An edge as written: explicit (``edges[i]``) or implied by ``needs`` of ``owner``."""

    source: str
    target: str
    branch: str | None
    path: str
    owner: str | None = None


def _links(definition: WorkflowDefinition) -> list[_Link]:
    links = [
        _Link(e.source, e.target, e.branch, f"edges[{i}]") for i, e in enumerate(definition.edges)
    ]
    for node in definition.nodes:
        for j, need in enumerate(node.needs):
            source, _, branch = need.partition(".")
            links.append(_Link(source, node.id, branch or None, f"needs[{j}]", node.id))
    return links


def _edge_problems(definition: WorkflowDefinition, registry: Registry) -> list[Problem]:
    problems: list[Problem] = []
    nodes = {n.id: n for n in definition.nodes}
    for link in _links(definition):
        ends = [(link.source, "from"), (link.target, "to")]
        for end, name in ends if link.owner is None else ends[:1]:
            if end not in nodes:
                where = link.path if link.owner else f"{link.path}.{name}"
                problems.append(
                    Problem(f"refers to unknown node '{end}'", node_id=link.owner, path=where)
                )
        if link.source == link.target:
            problems.append(
                Problem("a node cannot depend on itself", node_id=link.target, path=link.path)
            )
        elif link.source in nodes and link.target in nodes and link.branch is not None:
            problems += _branch_problem(
                registry, nodes[link.source], link.branch, link.owner, link.path
            )
    return problems


def _branch_problem(
    registry: Registry, source: Any, branch: str, owner: str | None, path: str
) -> list[Problem]:
    node_type = registry.get(source.type)
    if node_type is None:
        return []
    labels = node_type.branches(source.config)
    if labels is None:
        message = f"node '{source.id}' ({source.type}) has no branches, so '{branch}' is invalid"
    elif branch not in labels:
        message = (
            f"node '{source.id}' cannot produce branch '{branch}' "
            f"(it has: {', '.join(sorted(labels))})"
        )
    else:
        return []
    return [Problem(message, node_id=owner, path=path)]


def _literal_keys(registry: Registry, type_name: str) -> frozenset[str]:
    node_type = registry.get(type_name)
    return literal_fields(node_type.config_model) if node_type is not None else frozenset()


def _template_problems(
    definition: WorkflowDefinition, graph: Graph, registry: Registry
) -> list[Problem]:
    problems: list[Problem] = []
    known = set(graph.node_ids)
    for node in definition.nodes:
        upstream = graph.ancestors(node.id)
        literal = _literal_keys(registry, node.type)
        rendered = {k: v for k, v in node.config.items() if k not in literal}
        try:
            references = node_references(rendered, "config")
        except TemplateProblem as exc:
            problems.append(Problem(exc.message, node_id=node.id, path=exc.path))
            continue
        for path, ref in references:
            if ref not in known:
                problems.append(
                    Problem(f"template refers to unknown node '{ref}'", node_id=node.id, path=path)
                )
            elif ref not in upstream:
                problems.append(
                    Problem(
                        f"template refers to node '{ref}', which is not upstream of '{node.id}'",
                        node_id=node.id,
                        path=path,
                    )
                )
    return problems
