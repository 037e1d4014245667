"""The validator against an independent oracle: random definitions, valid and broken
(duplicate and malformed ids, unknown upstream nodes, self-loops, cycles, unknown node types,
branches a node cannot take, bad retry and timeout settings, missing config), must be
accepted or refused as the oracle says, and a refusal must name the nodes and fields the
oracle names. The oracle has its own id rules, its own cycle search and its own list of each
node type's branches; it shares no code with the validator."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conveyor.cli.main import app
from conveyor.credentials import check_name
from conveyor.engine.validation import check
from conveyor.errors import InputError
from conveyor.nodes.builtin import build_registry

REGISTRY = build_registry()
IDS = ["a", "b", "c", "d", "e", "_f", "g1"]
BAD_IDS = ["1a", "a-b", "ok\n", "é", "", "a b"]
LETTERS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
DIGITS = set("0123456789")

# Each node type the generator uses: a valid config, a config missing what it needs, and
# the branches it can take (None: it has none).
TYPES: dict[str, tuple[dict[str, Any], dict[str, Any], frozenset[str] | None]] = {
    "transform": ({"output": {"n": 1}}, {}, None),
    "condition": ({"if": True}, {}, frozenset({"true", "false"})),
    "switch": (
        {"value": "x", "cases": {"red": 1, "blue": 2}},
        {"value": "x"},
        frozenset({"red", "blue", "default"}),
    ),
}
UNKNOWN_TYPE = "transfrom"
GOOD_RETRY = [None, {"max_attempts": 1}, {"max_attempts": 5, "initial_interval": "2s"}]
BAD_RETRY = [
    {"max_attempts": 0},
    {"max_attempts": 1001},
    {"backoff_coefficient": 0.5},
    {"max_attempts": "many"},
    {"attempts": 3},
    {"initial_interval": "-1s"},
    "three",
]
GOOD_TIMEOUT = [None, "30s", "1h30m", 5, "250ms"]
BAD_TIMEOUT = ["-5s", "soon", -1, "5 parsecs", True, "101d" * 400, [1]]
BRANCHES = ["true", "false", "red", "default", "maybe"]


def valid_id(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value != ""
        and value[0] in LETTERS
        and all(ch in LETTERS or ch in DIGITS for ch in value)
    )


@dataclass
class Verdict:
    """What the oracle expects: (node id or None, field path prefix) of each problem."""

    problems: set[tuple[str | None, str]] = field(default_factory=set)
    cycle: list[str] | None = None


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    """Half of them are clean (distinct ids, known types, good settings, branches the
    source has; cycles still possible), the others carry faults at random."""
    noisy = draw(st.booleans())

    def fault(odds: int) -> bool:
        return noisy and draw(st.integers(0, odds - 1)) == 0

    count = draw(st.integers(1, 6))
    if noisy:
        ids = [draw(st.sampled_from(BAD_IDS if fault(8) else IDS)) for _ in range(count)]
    else:
        ids = draw(st.permutations(IDS))[:count]
    kinds = [UNKNOWN_TYPE if fault(6) else draw(st.sampled_from(list(TYPES))) for _ in ids]
    nodes = []
    for index, (node_id, kind) in enumerate(zip(ids, kinds, strict=True)):
        good, missing, _ = TYPES.get(kind, ({}, {}, None))
        node: dict[str, Any] = {"id": node_id, "type": kind}
        node["config"] = missing if fault(8) else good
        if needs := [_need(draw, ids, kinds, index, fault) for _ in range(draw(st.integers(0, 2)))]:
            node["needs"] = needs
        if fault(5):
            node["retry"] = draw(st.sampled_from(BAD_RETRY))
        elif (retry := draw(st.sampled_from(GOOD_RETRY))) is not None:
            node["retry"] = retry
        if fault(5):
            node["timeout"] = draw(st.sampled_from(BAD_TIMEOUT))
        elif (timeout := draw(st.sampled_from(GOOD_TIMEOUT))) is not None:
            node["timeout"] = timeout
        nodes.append(node)
    definition: dict[str, Any] = {"name": "fuzzed", "nodes": nodes}
    if draw(st.integers(0, 3)) == 0:
        source = "ghost" if fault(3) else draw(st.sampled_from(ids))
        edge = {"from": source, "to": draw(st.sampled_from(ids))}
        if fault(2):
            edge["branch"] = draw(st.sampled_from(BRANCHES))
        definition["edges"] = [edge]
    return definition


def _need(draw: st.DrawFn, ids: list[str], kinds: list[str], index: int, fault: Any) -> str:
    """Mostly an earlier node (a DAG), sometimes any node (maybe a cycle or a self-loop),
    an unknown one, or one with a branch (a wrong one only when faults are on)."""
    pick = draw(st.integers(0, 9))
    if fault(10):
        return "ghost"
    position = (
        draw(st.integers(0, len(ids) - 1))
        if pick == 0 or index == 0
        else draw(st.integers(0, index - 1))
    )
    source = ids[position]
    if fault(4):
        return f"{source}.{draw(st.sampled_from(BRANCHES))}"
    labels = TYPES.get(kinds[position], ({}, {}, None))[2]
    if labels and draw(st.integers(0, 2)) == 0:
        return f"{source}.{draw(st.sampled_from(sorted(labels)))}"
    return source


def _shape_ok(node: dict[str, Any], name: str) -> bool:
    value = node.get(name)
    if name == "retry":
        return value is None or value in GOOD_RETRY
    return value is None or value in GOOD_TIMEOUT


def _find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """A cycle by repeatedly removing nodes with no incoming edge (Kahn): what is left,
    if anything, lies on or behind a cycle; walk back from it until a node repeats."""
    remaining = {n for edge in edges for n in edge}
    live = set(edges)
    while True:
        sources = {n for n in remaining if not any(t == n for _, t in live)}
        if not sources:
            break
        remaining -= sources
        live = {(s, t) for s, t in live if s not in sources}
    if not remaining:
        return None
    walk = [min(remaining)]
    while walk.count(walk[-1]) < 2:
        walk.append(min(s for s, t in live if t == walk[-1]))
    start = walk.index(walk[-1])
    return walk[start:-1]


def _labels(node: dict[str, Any]) -> set[str]:
    """The branches a node can take, from its config as written (valid or not)."""
    if node["type"] == "condition":
        return {"true", "false"}
    if node["type"] == "switch":
        return {*node["config"].get("cases", {}), "default"}
    return set()


def oracle(definition: dict[str, Any]) -> Verdict:
    verdict = Verdict(problems=_node_verdict(definition["nodes"]))
    links = [
        (need.partition(".")[0], n["id"], need.partition(".")[2] or None, n["id"], "needs")
        for n in definition["nodes"]
        for need in n.get("needs", [])
    ]
    links += [
        (e["from"], e["to"], e.get("branch"), None, "edges") for e in definition.get("edges", [])
    ]
    edge_problems = _edge_verdict(definition["nodes"], links)
    verdict.problems |= edge_problems
    if not edge_problems:
        verdict.cycle = _find_cycle({(s, t) for s, t, *_ in links})
    return verdict


def _node_verdict(nodes: list[dict[str, Any]]) -> set[tuple[str | None, str]]:
    problems: set[tuple[str | None, str]] = set()
    ids = [n["id"] for n in nodes]
    for node in nodes:
        node_id = node["id"]
        if not valid_id(node_id) or ids.count(node_id) > 1:
            problems.add((node_id, "id"))
        for name in ("retry", "timeout"):
            if not _shape_ok(node, name):
                problems.add((node_id, name))
        if node["type"] not in TYPES:
            problems.add((node_id, "type"))
        elif node["config"] != TYPES[node["type"]][0]:
            problems.add((node_id, "config"))
    return problems


def _edge_verdict(
    nodes: list[dict[str, Any]], links: list[tuple[str, str, str | None, str | None, str]]
) -> set[tuple[str | None, str]]:
    problems: set[tuple[str | None, str]] = set()
    by_id = {n["id"]: n for n in nodes}
    for source, target, branch, owner, path in links:
        if source not in by_id:
            problems.add((owner, path))
        elif source == target:  # a self-loop names its node, also on an explicit edge
            problems.add((target, path))
        elif (
            branch is not None
            and by_id[source]["type"] in TYPES
            and branch not in _labels(by_id[source])
        ):
            problems.add((owner, path))
    return problems


def _matches(found: set[tuple[str | None, str]], expected: tuple[str | None, str]) -> bool:
    node_id, prefix = expected
    return any(n == node_id and p.startswith(prefix) for n, p in found)


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(definitions())
def test_the_validator_agrees_with_the_oracle(definition: dict[str, Any]) -> None:
    expected = oracle(definition)
    accepted, problems = check(definition, REGISTRY)
    found = {(p.node_id, p.path) for p in problems}
    refuse = bool(expected.problems) or expected.cycle is not None
    assert (accepted is None) == refuse, (definition, expected, problems)
    if not refuse:
        return
    node_level = {(n, p) for n, p in expected.problems if p in ("id", "type", "config")}
    for problem in node_level | {(n, p) for n, p in expected.problems if p in ("retry", "timeout")}:
        assert _matches(found, problem), (definition, problem, problems)
    for problem in expected.problems - node_level:
        assert _matches(found, problem), (definition, problem, problems)
    if expected.cycle is not None and not expected.problems:
        cycle = [p for p in problems if "cycle" in p.message]
        assert len(cycle) == 1, problems
        assert cycle[0].node_id in expected.cycle and cycle[0].path == "needs", problems
    # and nothing beyond what the oracle named
    named = {n for n, _ in expected.problems} | set(expected.cycle or [])
    assert {p.node_id for p in problems} <= named, (definition, expected, problems)


def test_a_trailing_newline_makes_a_name_invalid() -> None:
    """``$`` in a regular expression also matches before a final newline."""
    definition = {
        "name": "named",
        "nodes": [{"id": "a\n", "type": "transform", "config": {"output": 1}}],
    }
    accepted, problems = check(definition, REGISTRY)
    assert accepted is None and [(p.node_id, p.path) for p in problems] == [("a\n", "id")]
    with pytest.raises(InputError):
        check_name("smtp\n")
    assert check_name("smtp") == "smtp"


@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(definition=definitions())
def test_conveyor_validate_agrees_with_the_oracle(
    definition: dict[str, Any], tmp_path: Path
) -> None:
    """The command people run: exit 0 or 2 as the oracle says, naming the nodes it names."""
    expected = oracle(definition)
    path = tmp_path / "fuzzed.json"
    path.write_text(json.dumps(definition))
    done = CliRunner().invoke(app, ["validate", str(path)])
    refuse = bool(expected.problems) or expected.cycle is not None
    assert done.exit_code == (2 if refuse else 0), (definition, done.output)
    said = " ".join(done.output.split())  # as one line: Rich wraps long ones
    for node_id, _ in expected.problems:
        if node_id:
            named = " ".join(f"node '{node_id}'".split())
            assert named in said, (definition, node_id, done.output)
