"""Conveyor: durable workflow automation on SQLite and PostgreSQL.

The Python API: declare node types with :func:`node` (or subclass :class:`NodeType`), build
a :class:`Registry` with :func:`build_registry`, open :class:`Conveyor` on a database to
apply and execute workflows, and run them with a :class:`Worker`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    __version__: str

    from conveyor.app import Conveyor, Enqueued, Submission
    from conveyor.engine.definition import WorkflowDefinition
    from conveyor.errors import ConveyorError, DefinitionError, NodeError
    from conveyor.nodes.base import NodeContext, NodeResult, NodeType, node
    from conveyor.nodes.builtin import build_registry
    from conveyor.nodes.registry import Registry
    from conveyor.worker import Worker

# Loaded on first use, so that importing a submodule (``conveyor.cli.main`` answering
# ``--help``) does not pay for the database, the engine, pydantic or package metadata.
_HOMES = {
    "Conveyor": "conveyor.app",
    "Enqueued": "conveyor.app",
    "Submission": "conveyor.app",
    "WorkflowDefinition": "conveyor.engine.definition",
    "ConveyorError": "conveyor.errors",
    "DefinitionError": "conveyor.errors",
    "NodeError": "conveyor.errors",
    "NodeContext": "conveyor.nodes.base",
    "NodeResult": "conveyor.nodes.base",
    "NodeType": "conveyor.nodes.base",
    "node": "conveyor.nodes.base",
    "build_registry": "conveyor.nodes.builtin",
    "Registry": "conveyor.nodes.registry",
    "Worker": "conveyor.worker",
}

__all__ = [
    "Conveyor",
    "ConveyorError",
    "DefinitionError",
    "Enqueued",
    "NodeContext",
    "NodeError",
    "NodeResult",
    "NodeType",
    "Registry",
    "Submission",
    "Worker",
    "WorkflowDefinition",
    "__version__",
    "build_registry",
    "node",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("conveyor")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
