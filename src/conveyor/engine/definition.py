"""Workflow definitions: one pydantic model, loaded from YAML or JSON."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from conveyor.durations import Duration, DurationSchema
from conveyor.engine.triggers import TriggerSpec, unique_ids
from conveyor.errors import DefinitionError, InputError, Problem

NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ErrorStrategy(StrEnum):
    STOP = "stop"
    CONTINUE = "continue"
    RETRY = "retry"


class WaitFor(StrEnum):
    """When a node with several incoming edges starts: ``all`` once every upstream node has
    finished (skipped ones included), ``first`` as soon as one incoming edge fires."""

    ALL = "all"
    FIRST = "first"


class RetryPolicy(BaseModel):
    """How a failed or interrupted step is tried again. The default: 3 attempts, 1 s apart
    then doubling, at most 1 min apart. ``max_attempts: 1`` makes a step at-most-once (an
    interrupted attempt then fails instead of running again). Node types that are unsafe to
    repeat get one attempt unless a policy is given explicitly."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=1000)
    initial_interval: Duration = timedelta(seconds=1)
    backoff_coefficient: float = Field(default=2.0, ge=1.0, le=100.0)
    max_interval: Duration = timedelta(minutes=1)
    non_retryable: list[str] = Field(
        default_factory=list, description="error type names that are never retried"
    )


class Concurrency(BaseModel):
    """Limits on running executions, enforced when workers claim, across all processes."""

    model_config = ConfigDict(extra="forbid")

    limit: int | None = Field(
        default=None, ge=1, description="running executions of the workflow at once"
    )
    key: str | None = Field(
        default=None,
        max_length=200,
        description="template giving a key, e.g. 'user:{{ trigger.user_id }}'",
    )
    key_limit: int | None = Field(default=None, ge=1, description="running executions per key")

    @model_validator(mode="after")
    def _key_and_limit(self) -> Concurrency:
        if (self.key is None) != (self.key_limit is None):
            raise ValueError("'key' and 'key_limit' go together")
        return self


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(ge=1, description="executions started per period")
    period: Duration


class WorkflowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None
    priority: int = Field(default=0, ge=-1000, le=1000, description="higher runs first")

    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout: Duration | None = Field(default=None, description="default step timeout")
    execution_timeout: Duration | None = None
    on_error: ErrorStrategy = ErrorStrategy.STOP


class Edge(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    source: str = Field(alias="from")
    target: str = Field(alias="to")
    branch: str | None = None


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    type: str
    name: str | None = None
    description: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    needs: list[str] = Field(
        default_factory=list, description="upstream nodes; 'a.true' needs branch 'true' of a"
    )
    wait_for: WaitFor = Field(
        default=WaitFor.ALL,
        description="with several upstream nodes: start once all have finished ('all') or "
        "as soon as the first one's edge fires ('first'; the others still run)",
    )
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    on_error: ErrorStrategy | None = None

    @field_validator("needs", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class WorkflowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    description: str | None = None
    input: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema of an execution's input (e.g. type: object, properties "
        "with type, title, description, default, enum; required). Inputs are checked "
        "against it when an execution is enqueued; the dashboard's Run form follows it",
    )
    settings: WorkflowSettings = Field(default_factory=WorkflowSettings)
    nodes: list[Node] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)
    triggers: list[TriggerSpec] = Field(
        default_factory=list,
        description="schedules and webhooks that start this workflow while it is active",
    )

    @field_validator("triggers")
    @classmethod
    def _unique_triggers(cls, value: list[TriggerSpec]) -> list[TriggerSpec]:
        unique_ids(value)
        return value

    def all_edges(self) -> list[Edge]:
        """Explicit edges plus those implied by each node's ``needs``."""
        edges = list(self.edges)
        for node in self.nodes:
            for need in node.needs:
                source, _, branch = need.partition(".")
                edges.append(Edge(source=source, target=node.id, branch=branch or None))
        return edges

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def retry_policy(self, node: Node) -> RetryPolicy:
        return node.retry or self.settings.retry

    def explicit_retry(self, node: Node) -> bool:
        """Whether the node or the workflow states a retry policy (not just the default)."""
        return node.retry is not None or self.settings.retry != RetryPolicy()

    def error_strategy(self, node: Node) -> ErrorStrategy:
        return node.on_error or self.settings.on_error

    def timeout(self, node: Node) -> timedelta | None:
        return node.timeout or self.settings.timeout


def _location(data: Any, loc: tuple[int | str, ...]) -> tuple[str | None, str]:
    """Turn a pydantic error location into (node id, field path)."""
    node_id: str | None = None
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        try:
            raw_id = data["nodes"][loc[1]].get("id")
            node_id = str(raw_id) if raw_id is not None else None
        except (KeyError, IndexError, TypeError, AttributeError):
            node_id = None
        if node_id is not None:
            loc = loc[2:]
    return node_id, ".".join(str(p) for p in loc)


def parse_definition(data: Any) -> WorkflowDefinition:
    """Validate the shape of a definition; every shape problem is reported at once."""
    parsed = parse_leniently(data)
    if parsed.problems or parsed.definition is None:
        raise DefinitionError(parsed.problems)
    return parsed.definition


@dataclass(frozen=True)
class Parsed:
    """Every shape problem, plus the definition without the fields they are in (defaults in
    their place) when that still is one, so that validation goes on to check configs, the
    graph and templates in the same pass. ``whole_graph`` is false when a node or an edge
    had to be left out: then what the graph says would be about a different graph."""

    definition: WorkflowDefinition | None
    problems: list[Problem]
    whole_graph: bool = True


def parse_leniently(data: Any) -> Parsed:
    if not isinstance(data, dict):
        return Parsed(None, [Problem("a workflow definition must be a mapping")])
    try:
        return Parsed(WorkflowDefinition.model_validate(data), [])
    except ValidationError as exc:
        errors = exc.errors()
    problems = [Problem(err["msg"], *_location(data, tuple(err["loc"]))) for err in errors]
    repair = _Repair(data)
    for err in errors:
        repair.remove(tuple(err["loc"]))
    if not repair.possible:
        return Parsed(None, problems)
    try:
        definition = WorkflowDefinition.model_validate(repair.data())
    except ValidationError:
        return Parsed(None, problems)
    return Parsed(definition, problems, repair.whole_graph)


class _Repair:
    """A copy of a definition's data without the fields that failed validation."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.top = dict(data)
        nodes, settings = data.get("nodes"), data.get("settings")
        self.nodes: list[Any] | None = list(nodes) if isinstance(nodes, list) else None
        self.settings = dict(settings) if isinstance(settings, dict) else None
        self.dropped: set[int] = set()
        self.possible = True
        self.whole_graph = True

    def remove(self, loc: tuple[int | str, ...]) -> None:
        head = loc[0]
        if head == "nodes":
            self._remove_from_node(loc[1:])
        elif head == "settings" and len(loc) > 1 and self.settings is not None:
            self.settings.pop(str(loc[1]), None)
        elif head == "name":
            self.top["name"] = "workflow"
        else:
            self.top.pop(str(head), None)
            self.whole_graph = self.whole_graph and head != "edges"

    def _remove_from_node(self, loc: tuple[int | str, ...]) -> None:
        if self.nodes is None or not loc or not isinstance(loc[0], int):
            self.possible = False
            return
        index = loc[0]
        node = self.nodes[index]
        # Without its id, type or config a node cannot be checked any further.
        if len(loc) == 1 or loc[1] in ("id", "type", "config") or not isinstance(node, dict):
            self.dropped.add(index)
            self.whole_graph = False
            return
        self.nodes[index] = {k: v for k, v in node.items() if k != loc[1]}
        self.whole_graph = self.whole_graph and loc[1] != "needs"

    def data(self) -> dict[str, Any]:
        data = dict(self.top)
        if self.nodes is not None:
            data["nodes"] = [n for i, n in enumerate(self.nodes) if i not in self.dropped]
        if self.settings is not None:
            data["settings"] = self.settings
        return data


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false, so ``id: no`` or ``case: on`` stay strings."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


# Anchors and aliases let a few bytes of YAML stand for an exponential amount of data (a
# "billion laughs"): the expanded document is measured on the node tree before any of it is
# built, and refused past these bounds.
MAX_VALUES = 1_000_000
MAX_DEPTH = 100
MAX_DIGITS = 4300  # Python's own bound on converting text to an integer


class TooLarge(yaml.YAMLError):
    """YAML (or JSON) that expands past ``MAX_VALUES`` values or nests past ``MAX_DEPTH``."""


def measure(root: yaml.Node) -> None:
    """Refuse a tree that expands to more than ``MAX_VALUES`` values or nests deeper than
    ``MAX_DEPTH`` (linear in the tree: an aliased node is measured once)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise TooLarge(f"nested more than {MAX_DEPTH} levels deep")
        known = sizes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item, depth + 1) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            unique_keys(node)
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        else:
            total = 1
        if total > MAX_VALUES:
            raise TooLarge(f"it expands to more than {MAX_VALUES} values")
        sizes[id(node)] = total
        return total

    size(root, 0)


MERGE_TAG = "tag:yaml.org,2002:merge"


def unique_keys(mapping: yaml.MappingNode) -> None:
    """Refuse a key given twice in one mapping, as JSON bodies are (PyYAML would keep the
    last one silently: ``retry:`` written twice in a node would lose the first). A ``<<``
    merge may repeat keys: what it merges is meant to be overridden."""
    seen: dict[tuple[str, str], yaml.Node] = {}
    for key, _ in mapping.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE_TAG:
            continue
        first = seen.setdefault((key.tag, key.value), key)
        if first is not key:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                mapping.start_mark,
                f"the key {key.value!r} is given twice (first on line {first.start_mark.line + 1})",
                key.start_mark,
            )


def compose(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree and the data of YAML text, measured before the data is built."""
    loader = _Yaml12Loader(text)  # raises on characters YAML does not allow
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise TooLarge("nested too deeply") from None
        if root is None:
            return None, None
        measure(root)
        return root, loader.construct_document(root)
    finally:
        loader.dispose()


def load_yaml(text: str) -> Any:
    return compose(text)[1]


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits is too long (at most {MAX_DIGITS})")
    return int(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def load_json(text: str) -> Any:
    """JSON as Conveyor can store it on either database: numbers a double holds (no NaN, no
    infinities such as 1e400), integers of 64 bits, no NUL character in text (PostgreSQL
    cannot hold one), no key given twice in an object, nesting within ``MAX_DEPTH``."""
    try:
        data = json.loads(
            text,
            parse_float=_finite,
            parse_int=_integer,
            parse_constant=_no_constant,
            object_pairs_hook=_unique,
        )
        check_storable(data)
    except RecursionError:
        raise TooLarge("nested too deeply") from None
    return data


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object; a key given twice is refused (which one counts would be a guess)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key!r} is given twice in one object")
        found[key] = value
    return found


def check_storable(value: Any, depth: int = 0) -> None:
    """Raise ValueError (TooLarge for depth) for what the stored JSON cannot hold as given:
    NUL in text (PostgreSQL), lone surrogates, integers past 64 bits and nesting past
    ``MAX_DEPTH`` (the encoder's limits)."""
    if depth > MAX_DEPTH:
        raise TooLarge(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError("text cannot hold the NUL character (\\u0000)")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("text holds a lone surrogate (\\ud800 to \\udfff)") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**64:
            raise ValueError(f"the integer {value} is out of range (64 bits)")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, depth + 1)
            check_storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_storable(item, depth + 1)


def load_definition_text(
    text: str, source: str = "the definition", *, json_: bool = False
) -> dict[str, Any]:
    """Parse YAML (or JSON) text into plain definition data; bad syntax is an InputError
    naming ``source``."""
    try:
        data = load_json(text) if json_ else load_yaml(text)
        check_storable(data)
    except (yaml.YAMLError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise InputError(f"{source} is not valid {'JSON' if json_ else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise DefinitionError([Problem(f"{source} must contain a mapping at the top level")])
    return data


class _Dumper(yaml.SafeDumper):
    """Block style, and multi-line strings as ``|`` blocks (they read and diff line by line)."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and value == value.strip(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def to_yaml(data: Any) -> str:
    """A definition as people write it: keys in the order given, block style."""
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def load_definition_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON definition file into plain data."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{file} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    return load_definition_text(text, str(file), json_=file.suffix == ".json")


def definition_schema() -> dict[str, Any]:
    return WorkflowDefinition.model_json_schema(by_alias=True, schema_generator=DurationSchema)
