"""Conveyor: durable workflow automation on SQLite and PostgreSQL.

The Python API: declare node types with :func:`node` (or subclass :class:`NodeType`), build
a :class:`Registry` with :func:`build_registry`, open :class:`Conveyor` on a database to
apply and execute workflows, and run them with a :class:`Worker`.
"""

from conveyor.app import Conveyor, Enqueued
from conveyor.engine.definition import WorkflowDefinition
from conveyor.errors import ConveyorError, DefinitionError, NodeError
from conveyor.nodes.base import NodeContext, NodeResult, NodeType, node
from conveyor.nodes.builtin import build_registry
from conveyor.nodes.registry import Registry
from conveyor.worker import Worker

__version__ = "0.1.0"

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
    "Worker",
    "WorkflowDefinition",
    "__version__",
    "build_registry",
    "node",
]
