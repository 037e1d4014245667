"""The one exception tree of Conveyor.

    ConveyorError
    ├── DefinitionError          a workflow definition does not validate (carries every problem)
    ├── InputError               bad user input: JSON that does not parse, unknown ids, flags
    ├── InvalidInput             an execution's input breaks the workflow's declared input schema
    ├── PayloadTooLarge          a body, input or definition over its size limit (names the setting)
    ├── StoreUnavailable         the database cannot be opened or reached
    │   └── DatabaseUnreachable  its server did not answer a connection (worth waiting for)
    ├── ServiceUnavailable       a service a command needs (the drafting LLM) is not set or failed
    ├── NotFound                 an object does not exist (or is in another workspace)
    ├── Conflict                 a command that the current state does not allow
    ├── Unauthorized             no valid credentials
    ├── Forbidden                valid credentials, but the role does not allow the action
    ├── TooManyRequests          a caller over a brute-force or flooding limit (``retry_after``)
    ├── LeaseLost                a fenced write matched no row: another worker owns the execution
    └── NodeError                a node failed; ``non_retryable`` and ``retry_after`` steer retries
        ├── NodeTimeout          a step ran past its timeout
        ├── StepOutputTooLarge   a step's output is over its size limit (non-retryable)
        ├── HttpStatusError      an HTTP response had an unexpected status
        └── BlockedAddress       an outbound request targeted a refused address (non-retryable)

Interfaces map these to outcomes in one place each: HTTP statuses in ``api/problems.py`` and
CLI exit codes in ``cli/exits.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition, located by node id and field path."""

    message: str
    node_id: str | None = None
    path: str = ""

    def __str__(self) -> str:
        where = []
        if self.node_id:
            where.append(f"node '{self.node_id}'")
        if self.path:
            where.append(self.path)
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def as_dict(self) -> dict[str, Any]:
        return {"message": self.message, "node_id": self.node_id, "path": self.path}


class DefinitionError(ConveyorError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class InputError(ConveyorError):
    pass


class InvalidInput(ConveyorError):
    """An execution's input does not match the workflow's ``input`` schema (every field)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(
            "the input does not match the workflow's input schema: "
            + "; ".join(str(p) for p in problems)
        )


class PayloadTooLarge(ConveyorError):
    """Over a size limit; ``setting`` is the environment variable that raises it."""

    def __init__(self, message: str, *, setting: str, limit: int) -> None:
        super().__init__(message)
        self.setting = setting
        self.limit = limit


class StoreUnavailable(ConveyorError):
    pass


class DatabaseUnreachable(StoreUnavailable):
    """The database server refused or dropped the connection (not running yet, restarting,
    a network fault): a worker or server starting may wait for it."""


class ServiceUnavailable(ConveyorError):
    """A service outside the database that a command needs is not configured, or did not
    answer: the LLM that drafts workflows."""


class NotFound(ConveyorError):
    pass


class Conflict(ConveyorError):
    pass


class Unauthorized(ConveyorError):
    pass


class Forbidden(ConveyorError):
    pass


class TooManyRequests(ConveyorError):
    """Too many failed sign-ins or API keys, or deliveries to one webhook: refused until
    ``retry_after`` has passed."""

    def __init__(self, message: str, retry_after: timedelta) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class LeaseLost(ConveyorError):
    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(f"lease on execution {execution_id} is no longer held")


class NodeError(ConveyorError):
    """Raised by node code to fail a step with a structured error."""

    def __init__(
        self,
        message: str,
        *,
        non_retryable: bool = False,
        retry_after: timedelta | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.non_retryable = non_retryable
        self.retry_after = retry_after
        self.details = details or {}


class NodeTimeout(NodeError):
    pass


class StepOutputTooLarge(NodeError):
    def __init__(self, message: str) -> None:
        super().__init__(message, non_retryable=True)


class HttpStatusError(NodeError):
    pass


class BlockedAddress(NodeError):
    def __init__(self, message: str) -> None:
        super().__init__(message, non_retryable=True)
