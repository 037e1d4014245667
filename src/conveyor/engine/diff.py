"""What changed between two versions of a workflow: a unified diff of their YAML, and the
changes by node and edge (for a graph that highlights them)."""

from __future__ import annotations

import difflib
from typing import Any

from conveyor.engine.definition import WorkflowDefinition, parse_leniently, to_yaml

EdgeKey = tuple[str, str, str | None]


def diff_definitions(
    old: dict[str, Any], new: dict[str, Any], old_label: str, new_label: str
) -> dict[str, Any]:
    old_yaml, new_yaml = to_yaml(_ordered(old)), to_yaml(_ordered(new))
    unified = difflib.unified_diff(
        old_yaml.splitlines(keepends=True),
        new_yaml.splitlines(keepends=True),
        fromfile=old_label,
        tofile=new_label,
    )
    return {"unified": "".join(unified), "changes": changes(old, new)}


def changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Nodes added, removed and changed (with the fields that changed), edges added and
    removed (``needs`` and ``edges`` alike), and the other top-level fields that changed."""
    old_nodes, new_nodes = _nodes(old), _nodes(new)
    changed = [
        {"id": node_id, "fields": _changed_fields(old_nodes[node_id], node)}
        for node_id, node in new_nodes.items()
        if node_id in old_nodes and node != old_nodes[node_id]
    ]
    old_edges, new_edges = _edges(old), _edges(new)
    top = sorted(
        key
        for key in (old.keys() | new.keys()) - {"nodes", "edges"}
        if old.get(key) != new.get(key)
    )
    return {
        "nodes": {
            "added": [n for n in new_nodes if n not in old_nodes],
            "removed": [n for n in old_nodes if n not in new_nodes],
            "changed": changed,
        },
        "edges": {
            "added": [_edge(e) for e in new_edges if e not in old_edges],
            "removed": [_edge(e) for e in old_edges if e not in new_edges],
        },
        "fields": top,
    }


def _ordered(data: dict[str, Any]) -> dict[str, Any]:
    """The definition's fields in the model's order (PostgreSQL's JSONB keeps its own)."""
    order = [f.alias or name for name, f in WorkflowDefinition.model_fields.items()]
    node_order = ["id", "type", "name", "description", "needs", "config"]
    ordered = {key: data[key] for key in order if key in data}
    ordered |= {key: value for key, value in data.items() if key not in ordered}
    nodes = ordered.get("nodes")
    if isinstance(nodes, list):
        ordered["nodes"] = [
            {**{k: n[k] for k in node_order if k in n}, **n} if isinstance(n, dict) else n
            for n in nodes
        ]
    return ordered


def _nodes(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nodes = data.get("nodes")
    if not isinstance(nodes, list):
        return {}
    return {str(n["id"]): n for n in nodes if isinstance(n, dict) and "id" in n}


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def _edges(data: dict[str, Any]) -> list[EdgeKey]:
    """Every edge, explicit or implied by ``needs``, once each, in order."""
    parsed = parse_leniently(data).definition
    if parsed is None:
        return []
    found = [(e.source, e.target, e.branch) for e in parsed.all_edges()]
    return list(dict.fromkeys(found))


def _edge(edge: EdgeKey) -> dict[str, Any]:
    return {"from": edge[0], "to": edge[1], "branch": edge[2]}
