"""The node registry: an explicit object mapping node type names to node types."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from collections.abc import Iterable
from types import ModuleType

from conveyor.errors import InputError
from conveyor.nodes.base import NetworkPolicy, NodeType

ENTRY_POINT_GROUP = "conveyor.nodes"


class Registry:
    def __init__(
        self, node_types: Iterable[NodeType] = (), *, network: NetworkPolicy | None = None
    ) -> None:
        self._types: dict[str, NodeType] = {}
        # Where this process's steps may connect; every step's ``ctx.network``.
        self.network = network or NetworkPolicy()
        for node_type in node_types:
            self.register(node_type)

    def register(self, node_type: NodeType) -> NodeType:
        if not node_type.name:
            raise InputError(f"node type {node_type!r} has no name")
        if node_type.name in self._types:
            raise InputError(f"node type '{node_type.name}' is already registered")
        self._types[node_type.name] = node_type
        return node_type

    def get(self, name: str) -> NodeType | None:
        return self._types.get(name)

    def suggest(self, name: str) -> str | None:
        # A name's own prefix ("http" for "http.request") beats a mere resemblance ("stop").
        extended = sorted(n for n in self._types if name and n.startswith(name))
        if extended:
            return extended[0]
        close = difflib.get_close_matches(name, self._types, n=1, cutoff=0.5)
        return close[0] if close else None

    def names(self) -> list[str]:
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def load_module(self, module: str | ModuleType) -> list[str]:
        """Register every NodeType found at the top level of a module; return their names."""
        if isinstance(module, str):
            try:
                module = importlib.import_module(module)
            except ImportError as exc:
                raise InputError(f"cannot import plugin module '{module}': {exc}") from exc
        found = [v for v in vars(module).values() if isinstance(v, NodeType)]
        if not found:
            raise InputError(f"plugin module '{module.__name__}' defines no node types")
        for node_type in found:
            self.register(node_type)
        return [t.name for t in found]

    def load_entry_points(self) -> list[str]:
        """Register node types published under the ``conveyor.nodes`` entry-point group."""
        names: list[str] = []
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            target = ep.load()
            if isinstance(target, ModuleType):
                names += self.load_module(target)
            elif isinstance(target, NodeType):
                names.append(self.register(target).name)
            else:
                raise InputError(f"entry point '{ep.name}' is neither a module nor a NodeType")
        return names
