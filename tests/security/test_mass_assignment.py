"""Mass assignment: a request body cannot set what the server decides (ids, workspace,
creator, role, status, version, timestamps). Every JSON body model forbids unknown fields
(``additionalProperties: false`` in the OpenAPI document), so such a field is a 422 naming
it and nothing is written; dashboard forms read only their own fields, so extra ones are
ignored and the object is made as the signed-in user, in the page's workspace."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, Table, select

from conveyor.store import tables
from tests.api.support import problem_of
from tests.security.routes import DOCUMENT, ENDPOINTS, YAML, Endpoint, api_body, fill
from tests.security.world import World, unchanged

pytestmark = pytest.mark.asyncio(loop_scope="session")


def takes_body(endpoint: Endpoint) -> bool:
    operation = DOCUMENT["paths"].get(endpoint.path, {}).get(endpoint.method.lower(), {})
    return "requestBody" in operation and not endpoint.public


WITH_BODY = [e for e in ENDPOINTS if e.kind == "api" and takes_body(e)]


def injected(world: World) -> dict[str, Any]:
    """Fields a caller must not set, with values that would matter if they were set."""
    b = world.b
    return {
        "id": b.values["execution_id"],
        "workspace_id": b.id,
        "workspace": b.name,
        "user_id": b.owner.user_id,
        "created_by": b.owner.user_id,
        "updated_by": b.owner.user_id,
        "role": "owner",
        "is_admin": True,
        "status": "succeeded",
        "version": 99,
        "created_at": "2000-01-01T00:00:00Z",
        "updated_at": "2000-01-01T00:00:00Z",
        "revoked_at": None,
        "key_hash": "0" * 64,
    }


def schema_of(document: dict[str, Any], endpoint: Endpoint) -> dict[str, Any] | None:
    operation = document["paths"].get(endpoint.path, {}).get(endpoint.method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    if not content:
        return None
    assert list(content) == ["application/json"], content
    return resolve(document, content["application/json"]["schema"])


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def open_objects(document: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    """Where a body model (or a model nested in it) accepts fields it does not declare.
    Objects without declared properties (an execution's input, a definition) are data."""
    found = []
    schema = resolve(document, schema)
    if "properties" in schema:
        if schema.get("additionalProperties") is not False:
            found.append(where)
        for name, inner in schema["properties"].items():
            found += open_objects(document, inner, f"{where}.{name}")
    for key in ("anyOf", "oneOf", "allOf"):
        for i, inner in enumerate(schema.get(key, [])):
            found += open_objects(document, inner, f"{where}[{i}]")
    if "items" in schema:
        found += open_objects(document, schema["items"], f"{where}[]")
    return found


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=str)
async def test_a_body_model_forbids_fields_it_does_not_declare(
    world: World, endpoint: Endpoint
) -> None:
    document = world.app.openapi()
    schema = schema_of(document, endpoint)
    assert schema is not None
    assert not open_objects(document, schema, "body")


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=str)
async def test_a_body_with_fields_the_server_decides_is_refused(
    world: World, endpoint: Endpoint
) -> None:
    document = world.app.openapi()
    schema = schema_of(document, endpoint)
    valid = api_body(endpoint, world)
    assert schema is not None
    assert valid is not None, f"{endpoint} takes a body: add a valid one to routes.api_body"
    # A body that is one object or a list of them (execute): the object's fields.
    variants = [resolve(document, v) for v in schema.get("oneOf", [schema])]
    schema = next(v for v in variants if "properties" in v)
    declared = set(schema["properties"])
    extra = {k: v for k, v in injected(world).items() if k not in declared}
    headers = world.a.owner.bearer
    url = fill(endpoint, world.a.values)
    async with unchanged(world, endpoint):
        response = await world.call(headers, endpoint.method, url, json={**valid, **extra})
        errors = problem_of(response, 422)["errors"]
    refused = {e["path"].removeprefix("body.") for e in errors if "xtra" in e["message"]}
    assert refused == set(extra), errors


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_a_definition_with_fields_the_server_decides_is_refused(
    world: World, method: str
) -> None:
    """A definition is data, but a strict one: its top level and each node declare their
    fields, so ids, workspace, status or version in it are refused, naming each."""
    a = world.a
    extra = {k: v for k, v in injected(world).items() if k != "version"} | {"version": 7}
    node = {"id": "t", "type": "transform", "config": {"output": 1}, "workspace_id": world.b.id}
    name = a.values["workflow_name"] if method == "PUT" else "mass-definition"
    definition = {"name": name, "nodes": [node], **extra}
    url = f"/api/v1/workspaces/{a.name}/workflows"
    if method == "PUT":
        url += f"/{name}"
    changing = Endpoint(method, url, "api")
    async with unchanged(world, changing):
        response = await world.call(a.owner.bearer, method, url, json={"definition": definition})
        errors = problem_of(response, 422)["errors"]
    refused = {(e["node_id"], e["path"]) for e in errors}
    assert refused == {(None, k) for k in extra} | {("t", "workspace_id")}, errors


async def test_a_route_with_a_body_outside_the_api_is_public() -> None:
    """Only the webhook receiver takes a body it does not declare (it is the payload)."""
    public = [e for e in ENDPOINTS if takes_body(e) and e.kind != "api"]
    assert public == []


def row_named(table: Table, name: str) -> Callable[[Connection], dict[str, Any]]:
    def read(conn: Connection) -> dict[str, Any]:
        return dict(conn.execute(select(table).where(table.c.name == name)).mappings().one())

    return read


@pytest.mark.parametrize("path", ["settings/api-keys", "credentials", "workflows"])
async def test_a_dashboard_form_ignores_fields_the_server_decides(world: World, path: str) -> None:
    """A form creating something, sent with every injected field besides its own: made
    in the page's workspace, by the signed-in user, as a new object."""
    a = world.a
    who = a.admin if path.startswith("settings") else a.member
    name = f"mass-{path.replace('/', '-')}"
    own = {
        "settings/api-keys": {"name": name, "role": "viewer"},
        "credentials": {"name": name, "type": "bearer", "field.token": "t" * 12},
        "workflows": {"yaml": YAML.replace("made-by-form", name)},
    }[path]
    injected_fields = {k: str(v) for k, v in injected(world).items() if k not in own}
    injected_fields |= {f"field.{k}": v for k, v in injected_fields.items()}
    data = {**injected_fields, **own, "csrf_token": who.csrf}
    response = await world.call(who.cookie, "POST", f"/w/{a.name}/{path}", data=data)
    assert response.status_code == 303, response.text
    table = {"settings/api-keys": tables.api_keys, "credentials": tables.credentials}.get(
        path, tables.workflows
    )
    row = await world.store.read(row_named(table, name))
    assert row["workspace_id"] == a.id
    assert row["id"] != injected_fields["id"]
    assert row["created_at"].year > 2000
    if path == "settings/api-keys":
        assert (row["user_id"], row["role"], row["revoked_at"]) == (who.user_id, "viewer", None)
    elif path == "credentials":
        assert row["updated_by"] == who.user_id
        assert set(row["public"]) <= {"token"}  # no injected field became data
    else:
        assert (row["status"], row["latest_version"]) == ("active", 1)
