"""The webhooks management API on both backends: a declared webhook's secret shown once in
the save's answer, create / show / secret / enable / disable / delete / deliveries, roles,
and another workspace's webhook answering 404."""

from __future__ import annotations

from typing import Any

from conveyor.store.accounts import Role
from tests.api.conftest import Api, B
from tests.api.support import transform


def declaring(name: str) -> dict[str, Any]:
    return {**transform(name), "triggers": [{"type": "webhook", "id": "in"}]}


async def test_a_declared_webhook_is_shown_once_with_its_url(api: Api) -> None:
    saved = await api.http.post(f"{api.ws()}/workflows", json={"definition": declaring("hk")})
    assert saved.status_code == 201, saved.text
    (change,) = saved.json()["triggers"]
    assert change["kind"] == "webhook" and change["change"] == "created"
    assert change["url"].startswith("http://test/hooks/") and change["secret"].startswith("whsec_")
    listed = await api.http.get(f"{api.ws()}/workflows/hk/webhooks")
    assert listed.status_code == 200
    (item,) = listed.json()
    assert item["url"] == change["url"] and item["source"] == "definition"
    assert "secret" not in item
    # Saving the same definition again changes nothing and shows no secret.
    again = await api.http.post(f"{api.ws()}/workflows", json={"definition": declaring("hk")})
    assert again.status_code == 200 and again.json()["triggers"] == []


async def test_create_secret_enable_delete_and_roles(api: Api) -> None:
    await api.create(transform("plain"))
    url = f"{api.ws()}/workflows/plain/webhooks"
    created = await api.http.post(url, json={"id": "gh", "auth": {"scheme": "github"}})
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["secret"] and hook["source"] == "api" and hook["auth_mode"] == "signature"
    one = f"{api.ws()}/webhooks/{hook['id']}"
    shown = (await api.http.get(one)).json()
    assert "secret" not in shown and shown["url"] == hook["url"]

    given = await api.http.post(f"{one}/secret", json={"secret": "whsec_from_provider"})
    assert given.status_code == 200 and given.json()["secret"] == "whsec_from_provider"
    made = await api.http.post(f"{one}/secret", json={})
    assert made.json()["secret"].startswith("whsec_") and made.json()["secret"] != hook["secret"]

    assert (await api.http.post(f"{one}/disable")).json()["enabled"] is False
    assert (await api.http.post(f"{one}/enable")).json()["enabled"] is True
    deliveries = await api.http.get(f"{one}/deliveries", params={"limit": 5})
    assert deliveries.status_code == 200 and deliveries.json() == []

    viewer = api.as_(await api.caller(Role.VIEWER))
    seen = await viewer.get(one)  # the URL is a credential: a viewer cannot start executions
    assert seen.status_code == 200 and seen.json()["url"] is None
    assert [h["url"] for h in (await viewer.get(url)).json()] == [None]
    assert hook["url"].rsplit("/", 1)[1] not in seen.text
    assert (await viewer.post(f"{one}/disable")).status_code == 403
    assert (await viewer.post(f"{one}/secret", json={})).status_code == 403
    stranger = api.as_(await api.caller(Role.OWNER, B))
    assert (await stranger.get(f"{api.ws(B)}/webhooks/{hook['id']}")).status_code == 404

    bad_node = {"id": "s", "response": {"mode": "sync", "node": "missing"}}
    assert (await api.http.post(url, json=bad_node)).status_code == 400
    assert (await api.http.post(url, json={"id": "gh"})).status_code == 409  # taken

    assert (await api.http.delete(one)).status_code == 204
    assert (await api.http.get(one)).status_code == 404
    hooks = await api.http.get(url)
    assert [h["id"] for h in hooks.json()] == []
