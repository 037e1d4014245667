"""The credentials API on both backends: write-only values, replace, delete, used-by,
problem details for bad input, roles, and another workspace's credential answering 404."""

from __future__ import annotations

from conveyor.store.accounts import Role
from tests.api.conftest import Api, B
from tests.api.support import transform

SECRET = "sk-live-credential-api-9d81"


async def test_values_go_in_and_never_come_out(api: Api) -> None:
    url = f"{api.ws()}/credentials"
    made = await api.http.post(
        url,
        json={
            "name": "mail",
            "type": "smtp",
            "data": {"host": "smtp.example.com", "username": "bot", "password": SECRET},
            "description": "outgoing mail",
        },
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["fields"]["host"] == "smtp.example.com" and body["fields"]["username"] == "bot"
    assert body["secret_fields"] == ["password"]
    for answer in (made, await api.http.get(url), await api.http.get(f"{url}/mail")):
        assert SECRET not in answer.text
    again = await api.http.post(url, json={"name": "mail", "type": "bearer", "data": {}})
    assert again.status_code == 409

    definition = transform("sends")
    definition["nodes"][0]["config"] = {"output": {"credential": "mail"}}
    await api.create(definition)
    used = (await api.http.get(f"{url}/mail")).json()["used_by"]
    assert [u["workflow"] for u in used] == ["sends"]

    replaced = await api.http.put(f"{url}/mail", json={"type": "bearer", "data": {"token": SECRET}})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["type"] == "bearer" and SECRET not in replaced.text
    assert (await api.http.delete(f"{url}/mail")).status_code == 204
    assert (await api.http.get(f"{url}/mail")).status_code == 404


async def test_bad_input_is_a_problem_naming_it(api: Api) -> None:
    url = f"{api.ws()}/credentials"
    wrong_type = await api.http.post(url, json={"name": "x", "type": "magic", "data": {}})
    assert wrong_type.status_code == 400
    assert wrong_type.headers["content-type"].startswith("application/problem+json")
    assert "unknown credential type" in wrong_type.text
    missing = await api.http.post(
        url, json={"name": "x", "type": "basic", "data": {"username": "u"}}
    )
    assert missing.status_code == 400 and "password" in missing.text
    bad_name = await api.http.post(url, json={"name": "no spaces", "type": "bearer", "data": {}})
    assert bad_name.status_code == 422
    types = (await api.http.get(f"{api.ws()}/credential-types")).json()
    assert {t["name"] for t in types} >= {"bearer", "basic", "smtp", "database", "llm"}


async def test_roles_and_workspaces(api: Api) -> None:
    url = f"{api.ws()}/credentials"
    made = await api.http.post(
        url, json={"name": "api", "type": "bearer", "data": {"token": SECRET}}
    )
    assert made.status_code == 201
    viewer = api.as_(await api.caller(Role.VIEWER))
    assert (await viewer.get(url)).status_code == 200
    assert (await viewer.delete(f"{url}/api")).status_code == 403
    refused = await viewer.post(
        url, json={"name": "v", "type": "bearer", "data": {"token": SECRET}}
    )
    assert refused.status_code == 403
    stranger = api.as_(await api.caller(Role.OWNER, B))
    assert (await stranger.get(f"{api.ws(B)}/credentials/api")).status_code == 404
    assert (await stranger.get(f"{api.ws(B)}/credentials")).json() == []
