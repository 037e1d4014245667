"""Differences between two versions: a unified diff of their YAML, and structured changes."""

from __future__ import annotations

from typing import Any

from conveyor.engine.definition import load_yaml, to_yaml
from conveyor.engine.diff import changes, diff_definitions

OLD: dict[str, Any] = {
    "name": "orders",
    "nodes": [
        {"id": "fetch", "type": "http.request", "config": {"url": "https://a.example"}},
        {"id": "route", "type": "condition", "needs": ["fetch"], "config": {"if": True}},
        {"id": "gone", "type": "transform", "needs": ["route.true"], "config": {"output": 1}},
    ],
}
NEW: dict[str, Any] = {
    "name": "orders",
    "description": "now with a notification",
    "nodes": [
        {"id": "fetch", "type": "http.request", "config": {"url": "https://b.example"}},
        {"id": "route", "type": "condition", "needs": ["fetch"], "config": {"if": True}},
        {"id": "tell", "type": "notify", "config": {"title": "hi"}},
    ],
    "edges": [{"from": "route", "to": "tell", "branch": "false"}],
}


def test_changes_name_nodes_and_edges_added_removed_and_changed() -> None:
    assert changes(OLD, NEW) == {
        "nodes": {
            "added": ["tell"],
            "removed": ["gone"],
            "changed": [{"id": "fetch", "fields": ["config"]}],
        },
        "edges": {
            "added": [{"from": "route", "to": "tell", "branch": "false"}],
            "removed": [{"from": "route", "to": "gone", "branch": "true"}],
        },
        "fields": ["description"],
    }


def test_the_same_version_has_no_changes_and_an_empty_diff() -> None:
    same = diff_definitions(OLD, OLD, "orders v1", "orders v1")
    assert same["unified"] == ""
    assert same["changes"] == {
        "nodes": {"added": [], "removed": [], "changed": []},
        "edges": {"added": [], "removed": []},
        "fields": [],
    }


def test_the_unified_diff_is_of_the_yaml_renderings_in_the_models_order() -> None:
    # keys in another order (as PostgreSQL's JSONB keeps them) render the same
    shuffled = {"nodes": [{"config": n["config"], **n} for n in NEW["nodes"]], **NEW}
    shuffled = dict(reversed(list(shuffled.items())))
    result = diff_definitions(OLD, shuffled, "orders v1", "orders v2")
    lines = result["unified"].splitlines()
    assert lines[:2] == ["--- orders v1", "+++ orders v2"]
    assert "-    url: https://a.example" in lines
    assert "+    url: https://b.example" in lines
    assert "+description: now with a notification" in lines
    assert "-- id: gone" in lines and "+- id: tell" in lines
    assert result["changes"] == changes(OLD, NEW)


def test_to_yaml_reads_back_as_the_same_data() -> None:
    data = {**NEW, "description": "two\nlines\n", "settings": {"priority": 1}}
    text = to_yaml(data)
    assert "description: |" in text
    assert load_yaml(text) == data
