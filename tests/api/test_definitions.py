"""What the editor uses over HTTP: the node type palette, validation with YAML positions,
and a workflow's declared input schema (checked at save and at enqueue)."""

from __future__ import annotations

from typing import Any

from conveyor.store.accounts import Role
from tests.api.conftest import Api
from tests.api.support import API, problem_of, transform

YAML = """\
name: edited
nodes:
  - id: fetch
    type: http.request
    config:
      url: ftp://example.com
  - id: use
    type: transform
    needs: [fetch]
    config:
      output: "{{ nodes.fetch.output.body }}"
  - id: oops
    type: transfrom
"""

WITH_INPUT: dict[str, Any] = {
    "name": "order",
    "input": {
        "type": "object",
        "properties": {
            "email": {"type": "string", "title": "Email"},
            "count": {"type": "integer", "minimum": 1, "default": 1},
            "size": {"type": "string", "enum": ["s", "m", "l"]},
        },
        "required": ["email"],
    },
    "nodes": [{"id": "t", "type": "transform", "config": {"output": "{{ input.email }}"}}],
}


async def test_node_types_list_every_registered_type_for_any_signed_in_caller(api: Api) -> None:
    viewer = await api.caller(Role.VIEWER)
    response = await api.as_(viewer).get(f"{API}/node-types")
    assert response.status_code == 200, response.text
    found = {entry["name"]: entry for entry in response.json()}
    assert set(found) == set(api.conveyor.registry.names())  # the test's own types too
    http = found["http.request"]
    assert http["category"] == "http" and http["icon"] == "globe"
    assert http["config_schema"]["properties"]["url"]["x-template"] is True
    assert http["config_schema"]["required"] == ["url"]
    assert found["condition"]["branches"] == ["false", "true"]
    assert found["switch"]["branches_from"] == "config.cases"
    assert found["test.gate"]["category"] == "custom"
    problem_of(await api.new_client().get(f"{API}/node-types"), 401)


async def test_validate_yaml_locates_each_problem_at_its_line_and_node(api: Api) -> None:
    response = await api.http.post(f"{api.ws()}/validate", json={"yaml": YAML})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["valid"] is False and body["definition"] is None
    # what an editor draws meanwhile: the text's data as written
    assert [n["id"] for n in body["document"]["nodes"]] == ["fetch", "use", "oops"]
    assert body["document"]["nodes"][2]["type"] == "transfrom"
    found = {(p["node_id"], p["path"]): p for p in body["problems"]}
    assert set(found) == {("fetch", "config.url"), ("oops", "type")}
    url = found[("fetch", "config.url")]
    assert (url["line"], url["column"], url["document_path"]) == (6, 7, "nodes[0].config.url")
    oops = found[("oops", "type")]
    assert oops["line"] == 13
    assert oops["message"] == "unknown node type 'transfrom' (did you mean 'transform'?)"
    # the same messages as a refused save
    from conveyor.engine.definition import load_yaml

    saved = await api.http.post(f"{api.ws()}/workflows", json={"definition": load_yaml(YAML)})
    errors = problem_of(saved, 422)["errors"]
    assert sorted((e["node_id"], e["path"], e["message"]) for e in errors) == sorted(
        (p["node_id"], p["path"], p["message"]) for p in body["problems"]
    )


async def test_validate_answers_the_normalized_definition_when_valid(api: Api) -> None:
    text = "name: fine\nnodes:\n  - {id: a, type: wait, config: {duration: 90}}\n"
    body = (await api.http.post(f"{api.ws()}/validate", json={"yaml": text})).json()
    assert body["valid"] is True and body["problems"] == []
    assert body["definition"]["name"] == "fine"
    assert body["definition"]["nodes"][0]["config"] == {"duration": 90}
    assert "settings" in body["definition"]  # defaults filled in, as stored
    as_json = await api.http.post(f"{api.ws()}/validate", json={"definition": transform("j")})
    assert as_json.json()["valid"] is True
    # nothing was saved
    listed = (await api.http.get(f"{api.ws()}/workflows")).json()["items"]
    assert listed == []


async def test_validate_reports_a_yaml_syntax_error_at_its_line(api: Api) -> None:
    text = "name: broken\nnodes:\n  - id: a\n    type: [transform\n"
    body = (await api.http.post(f"{api.ws()}/validate", json={"yaml": text})).json()
    [problem] = body["problems"]
    assert problem["message"].startswith("not valid YAML: ")
    assert problem["line"] == 5 and problem["node_id"] is None
    assert body["document"] is None


async def test_validate_takes_exactly_one_of_yaml_or_definition(api: Api) -> None:
    url = f"{api.ws()}/validate"
    problem_of(await api.http.post(url, json={}), 422)
    problem_of(await api.http.post(url, json={"yaml": "a: 1", "definition": {}}), 422)
    viewer = await api.caller(Role.VIEWER)
    problem_of(await api.as_(viewer).post(url, json={"yaml": "a: 1"}), 403)


async def test_a_definition_over_its_limit_is_413_when_validated_too(api: Api) -> None:
    text = "name: big\nnodes:\n  - {id: a, type: transform, config: {output: '%s'}}\n"
    huge = text % ("x" * (api.conveyor.limits.definition_bytes + 10))
    response = await api.http.post(f"{api.ws()}/validate", json={"yaml": huge})
    assert problem_of(response, 413)["setting"] == "CONVEYOR_MAX_DEFINITION_BYTES"


async def test_a_bad_input_schema_is_refused_at_save_with_its_path(api: Api) -> None:
    broken = {**WITH_INPUT, "input": {"type": "object", "properties": {"n": {"type": "int"}}}}
    response = await api.http.post(f"{api.ws()}/workflows", json={"definition": broken})
    errors = problem_of(response, 422)["errors"]
    assert [e["path"] for e in errors] == ["input.properties.n.type"]


async def test_the_input_is_checked_against_the_declared_schema_at_enqueue(api: Api) -> None:
    created = await api.create(WITH_INPUT)
    assert created["definition"]["input"] == WITH_INPUT["input"]
    url = f"{api.ws()}/workflows/order/execute"
    response = await api.http.post(url, json={"input": {"count": 0, "size": "xl"}})
    body = problem_of(response, 422)
    assert body["type"].endswith("/invalid-input")
    assert {e["path"]: e["message"] for e in body["errors"]} == {
        "input.email": "a value is required",
        "input.count": "0 is less than the minimum of 1",
        "input.size": "'xl' is not one of ['s', 'm', 'l']",
    }
    assert "input.email" in body["detail"]
    assert (await api.http.get(f"{api.ws()}/executions")).json()["items"] == []

    execution_id = await api.execute("order", {"email": "a@example.com", "size": "s"})
    finished = await api.until_finished(execution_id)
    assert finished["status"] == "succeeded"
