"""Definitions as YAML text, for an editor: parsed with the position of every value, so that
each problem found by validation is shown at its line and column.

A problem is located by its node id and path (``node 'fetch', config.url``); in the
document that is ``nodes[2].config.url``, and the line is that of the key ``url`` in the
YAML node tree. A path deeper than the text goes (a missing field) points at the deepest
part that exists.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import yaml

from conveyor.engine.definition import WorkflowDefinition, compose
from conveyor.engine.validation import check
from conveyor.errors import Problem
from conveyor.nodes.registry import Registry

_SEGMENT = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
Segment = str | int


@dataclass(frozen=True)
class Located:
    """A problem, where it is in the document (``nodes[2].config.url``) and in the text."""

    problem: Problem
    document_path: str = ""
    line: int | None = None
    column: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.problem.as_dict(),
            "document_path": self.document_path,
            "line": self.line,
            "column": self.column,
        }


@dataclass(frozen=True)
class Source:
    """A definition's data and, when it came as YAML text, its node tree (None for JSON or
    text that did not parse). ``problems``: why the text is not a definition at all."""

    data: Any
    root: yaml.Node | None = None
    problems: list[Located] = field(default_factory=list)


@dataclass(frozen=True)
class Review:
    problems: list[Located]
    definition: WorkflowDefinition | None

    @property
    def valid(self) -> bool:
        return not self.problems and self.definition is not None


def load_source(text: str) -> Source:
    """Parse YAML text (YAML 1.2 booleans, as everywhere) keeping its node tree."""
    try:
        root, data = compose(text)
    except yaml.MarkedYAMLError as exc:
        return Source(None, None, [_syntax_problem(exc)])
    except yaml.reader.ReaderError as exc:
        return Source(None, None, [_character_problem(text, exc)])
    except yaml.YAMLError as exc:
        return Source(None, None, [Located(Problem(f"not valid YAML: {exc}"))])
    except RecursionError:
        return Source(None, None, [Located(Problem("not valid YAML: nested too deeply"))])
    if root is None:
        return Source(None)
    problems: list[Located] = []
    data = _plain(data, [], problems, root)
    return Source(None if problems else data, root, problems)


def review(source: Source, registry: Registry) -> Review:
    """Every problem of the definition, each located; the definition when there are none."""
    if source.problems:
        return Review(source.problems, None)
    definition, problems = check(source.data, registry)
    return Review([locate(p, source) for p in problems], definition)


def locate(problem: Problem, source: Source) -> Located:
    segments = document_path(problem, source.data)
    where = position(source.root, segments) if source.root is not None else None
    line, column = where if where is not None else (None, None)
    return Located(problem, format_path(segments), line, column)


def document_path(problem: Problem, data: Any) -> list[Segment]:
    """The problem's path from the top of the document: a node's problems are relative to
    the node, found by its id (the first node with that id)."""
    segments = split_path(problem.path)
    nodes = data.get("nodes") if isinstance(data, dict) else None
    # An explicit edge's problem names the node it concerns, but its path is the edge's.
    top_level = segments[:1] == ["edges"]
    if problem.node_id is None or top_level or not isinstance(nodes, list):
        return segments
    for index, node in enumerate(nodes):
        if isinstance(node, dict) and str(node.get("id")) == problem.node_id:
            return ["nodes", index, *segments]
    return segments


def split_path(path: str) -> list[Segment]:
    """``nodes[2].config.url`` and pydantic's ``nodes.2.config`` alike."""
    segments: list[Segment] = []
    for index, name in _SEGMENT.findall(path):
        if index:
            segments.append(int(index))
        else:
            segments.append(int(name) if name.isdigit() else name)
    return segments


def format_path(segments: list[Segment]) -> str:
    text = ""
    for segment in segments:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else segment
    return text


def position(root: yaml.Node, segments: list[Segment]) -> tuple[int, int]:
    """1-based line and column of the deepest part of ``segments`` found in the tree: a key
    of a mapping, or an item of a sequence."""
    node, mark = root, root.start_mark
    rest = list(segments)
    while rest:
        step = _step(node, rest)
        if step is None:
            break
        node, mark, used = step
        rest = rest[used:]
    return mark.line + 1, mark.column + 1


def _step(node: yaml.Node, rest: list[Segment]) -> tuple[yaml.Node, yaml.Mark, int] | None:
    """Into ``node`` by the first segment(s): the value, the mark to report, and how many
    segments were used (a key with dots in it takes several)."""
    if isinstance(node, yaml.SequenceNode):
        index = rest[0]
        if isinstance(index, int) and 0 <= index < len(node.value):
            item = node.value[index]
            return item, item.start_mark, 1
        return None
    if isinstance(node, yaml.MappingNode):
        for used in range(1, len(rest) + 1):
            name = ".".join(str(s) for s in rest[:used])
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == name:
                    return value, key.start_mark, used
    return None


def _plain(value: Any, path: list[Segment], problems: list[Located], root: yaml.Node) -> Any:
    """The data as JSON has it: times become ISO 8601 text (as JSON definitions hold them);
    what JSON cannot hold (binary, sets, infinities) is a problem at its line."""
    if isinstance(value, dict):
        return {k: _plain(v, [*path, str(k)], problems, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, [*path, i], problems, root) for i, v in enumerate(value)]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        kind = "not a number (.nan)" if math.isnan(value) else "infinite (.inf)"
    elif isinstance(value, bytes | set):
        kind = "binary (!!binary)" if isinstance(value, bytes) else "a set (!!set)"
    else:
        return value
    line, column = position(root, path)
    where = format_path(path)
    message = f"JSON cannot hold this value: it is {kind}"
    problems.append(Located(Problem(message, path=where), where, line, column))
    return None


def _syntax_problem(exc: yaml.MarkedYAMLError) -> Located:
    message = f"not valid YAML: {exc.problem or exc}"
    if exc.context:
        message += f" ({exc.context})"
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return Located(Problem(message))
    return Located(Problem(message), "", mark.line + 1, mark.column + 1)


def _character_problem(text: str, exc: yaml.reader.ReaderError) -> Located:
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - text.rfind("\n", 0, exc.position)
    message = f"not valid YAML: character #x{exc.character:04x} is not allowed"
    return Located(Problem(message), "", line, column)
