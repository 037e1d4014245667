"""Property-based tests of the REST API against its own OpenAPI document (schemathesis).

The app runs in-process (schemathesis' ASGI transport, which also runs the app's lifespan
and so starts its live Feed) on a fresh SQLite database seeded with an owner, an API key for
workspace "default", a stored workflow and two executions (one succeeded, one failed).
Every generated request carries the API key; path parameters are mostly the seeded names
and ids (from dictionaries), otherwise generated, so both found and not-found paths run.

Checks, one test per family so that one kind of failure does not hide another: no server
errors; response bodies that conform to their documented schemas; status codes and content
types that are documented. Plus a deterministic pass giving every integer input the 32- and
64-bit edges, which random generation rarely reaches.

Streams (SSE) are excluded: they never end by design; tests/e2e/test_server.py covers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NOT_SET
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conveyor.api.app import create_app
from conveyor.app import Conveyor
from conveyor.engine.interfaces import SystemClock
from conveyor.generate import GeneratorSettings
from conveyor.nodes.builtin import build_registry
from conveyor.store import accounts
from conveyor.store.accounts import Role
from conveyor.worker import Worker
from tests.integration.llmserver import LLMServer

OPENAPI = "/api/v1/openapi.json"
WORKFLOW = "greet"
FAILING = "broken"
MAX_EXAMPLES = 12
# One past the largest 32-bit integer (PostgreSQL INTEGER), the largest 64-bit integer
# (SQLite INTEGER, PostgreSQL BIGINT) and one past it.
INTEGER_EDGES = [2**31, 2**63 - 1, 2**63]
STREAMS = re.compile(r"/stream$")
# What the local LLM answers to every drafting request (generate): a valid definition.
DRAFT = "```yaml\nname: drafted\nnodes:\n  - {id: a, type: transform, config: {output: 1}}\n```"


@dataclass(frozen=True)
class Seeded:
    conveyor: Conveyor
    key: str
    succeeded: str
    failed: str


async def _seed(url: str) -> Seeded:
    # Private addresses allowed: the drafting LLM of ``generate`` is on 127.0.0.1.
    conveyor = await Conveyor.open(url, build_registry(allow_private_network=True))
    store, now = conveyor.store, conveyor.store.clock.now()
    user = await store.write(
        accounts.create_user, "owner@example.com", "correct horse battery", now, is_admin=True
    )
    await store.write(accounts.set_role, user, conveyor.workspace_id, Role.OWNER, now)
    key, _row = await store.write(
        accounts.create_api_key, conveyor.workspace_id, user, "schemathesis", Role.OWNER, now
    )
    await conveyor.apply(
        {
            "name": WORKFLOW,
            "nodes": [
                {"id": "hello", "type": "transform", "config": {"output": {"n": 1}}},
                {
                    "id": "again",
                    "type": "transform",
                    "needs": ["hello"],
                    "config": {"output": {"m": "{{ nodes.hello.output.n }}"}},
                },
            ],
        }
    )
    await conveyor.apply(
        {
            "name": FAILING,
            "nodes": [
                {
                    "id": "boom",
                    "type": "fail",
                    "config": {"message": "on purpose", "non_retryable": True},
                }
            ],
        }
    )
    worker = Worker(store, conveyor.registry, SystemClock())
    ids = []
    for name in (WORKFLOW, FAILING):
        execution_id = (await conveyor.execute(name, {"who": "seed"})).execution_id
        await worker.run_one(execution_id)
        ids.append(execution_id)
    return Seeded(conveyor, key, *ids)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    data = asyncio.run(_seed(f"sqlite:///{tmp_path / 'api.db'}"))
    try:
        yield data
    finally:
        data.conveyor.close()


def _config(data: Seeded) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": 1,
            "dictionaries": {
                "workspaces": {"values": ["default"]},
                "workflows": {"values": [WORKFLOW, FAILING]},
                "executions": {"values": [data.succeeded, data.failed]},
            },
            "parameters": {
                "path.ws": {"dictionary": "workspaces", "probability": 0.9},
                "path.workflow": {"dictionary": "workflows", "probability": 0.8},
                "path.execution_id": {"dictionary": "executions", "probability": 0.8},
            },
            "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES},
        }
    )


@pytest.fixture
def llm() -> Iterator[LLMServer]:
    server = LLMServer(default_text=DRAFT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api_schema(seeded: Seeded, llm: LLMServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    # schemathesis' lazy loader (4.x) renames the test item through the private
    # ``Node._nodeid``, which pytest 9 no longer has: give it one to rename.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    app = create_app(seeded.conveyor, drafting=GeneratorSettings(llm.base_url, "drafter"))
    # from_asgi starts the app's lifespan (so app.state.feed exists); it stays up until
    # shutdown_lifespans below, before the store is closed.
    loaded = schemathesis.openapi.from_asgi(OPENAPI, app, config=_config(seeded))
    try:
        yield loaded
    finally:
        with contextlib.suppress(Exception):
            asgi.shutdown_lifespans()


# Streams (SSE; the WebSocket is not in the OpenAPI document) never end by design: they are
# left to tests/e2e/test_server.py. (Filters go on the lazy schema: the fixture's own are not
# applied.)
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path_regex=STREAMS.pattern)
# Bounded and reproducible: a few examples per operation (plus the examples and coverage
# phases), no deadline (requests go through the database), the same inputs every run.
bounded = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def call(case: schemathesis.Case, data: Seeded, checks: list[Any]) -> None:
    case.call_and_validate(headers=auth(data), checks=checks)


def auth(data: Seeded) -> dict[str, str]:
    return {"Authorization": f"Bearer {data.key}"}


# One test per family of checks, so a failure of one kind (which ends that operation's
# search) does not hide failures of another.


@pytest.mark.timeout(420)  # the whole search of one family of checks, on a loaded 2-core box
@schema.parametrize()
@bounded
def test_no_server_errors(case: schemathesis.Case, seeded: Seeded) -> None:
    call(case, seeded, [not_a_server_error])


@pytest.mark.timeout(420)  # the whole search of one family of checks, on a loaded 2-core box
@schema.parametrize()
@bounded
def test_responses_match_their_documented_schemas(case: schemathesis.Case, seeded: Seeded) -> None:
    call(case, seeded, [response_schema_conformance])


@pytest.mark.timeout(420)  # the whole search of one family of checks, on a loaded 2-core box
@schema.parametrize()
@bounded
def test_status_codes_and_content_types_are_documented(
    case: schemathesis.Case, seeded: Seeded
) -> None:
    call(case, seeded, [status_code_conformance, content_type_conformance])


# -- integers at their edges, deterministically ----------------------------------------------


def integer_inputs(document: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """(path, method, location, name) of every integer parameter and every top-level
    integer field of a JSON body, streams excepted."""
    components = document.get("components", {}).get("schemas", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = components[node["$ref"].rsplit("/", 1)[1]]
        return node

    def is_integer(node: dict[str, Any]) -> bool:
        node = resolve(node)
        options = [node, *(resolve(o) for o in node.get("anyOf", []))]
        return any(o.get("type") == "integer" for o in options)

    for path, operations in document["paths"].items():
        if STREAMS.search(path):
            continue
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if is_integer(parameter.get("schema", {})):
                    yield path, method, parameter["in"], parameter["name"]
            content = operation.get("requestBody", {}).get("content", {})
            body = content.get("application/json", {}).get("schema")
            for name, field in resolve(body or {}).get("properties", {}).items():
                if is_integer(field):
                    yield path, method, "body", name


@pytest.mark.timeout(120)
def test_integer_inputs_at_their_edges_are_not_server_errors(
    api_schema: Any, seeded: Seeded
) -> None:
    """Every integer input (path, query, body) given each of INTEGER_EDGES answers without a
    server error: a 4xx or a success, never a 500."""
    found = list(integer_inputs(api_schema.raw_schema))
    assert found, "no integer inputs in the OpenAPI document"
    defaults = {
        "ws": "default",
        "workflow": WORKFLOW,
        "execution_id": seeded.succeeded,
        "version": 1,
        "a": 1,  # the versions a diff compares
        "b": 1,
        "key_id": "none",
        "node_id": "hello",
        "part": "output",
        "webhook_id": "none",
        "schedule_id": "none",
        "token": "none",
        "name": "none",
    }
    problems = []
    for path, method, location, name in found:
        operation = api_schema[path][method.upper()]
        path_parameters = {p: defaults[p] for p in re.findall(r"{(\w+)}", path) if p in defaults}
        for value in INTEGER_EDGES:
            case = operation.Case(
                path_parameters={
                    **path_parameters,
                    **({name: value} if location == "path" else {}),
                },
                query={name: value} if location == "query" else None,
                body={name: value} if location == "body" else NOT_SET,
            )
            label = f"{method.upper()} {path} {location} {name}={value}"
            try:
                case.call_and_validate(headers=auth(seeded), checks=[not_a_server_error])
            except Exception as exc:  # the ASGI transport re-raises the app's own exception
                problems.append(f"{label}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    assert not problems, "server errors:\n" + "\n".join(problems)
