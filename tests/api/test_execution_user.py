"""Who ran it: templates see the authenticated caller (``execution.user``), never the input;
the workspace's per-user running limit holds at claim time; lists filter by a user's email
and user statistics name the user."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, update

from conveyor.store.accounts import Role
from conveyor.store.tables import users
from tests.api.conftest import Api, Caller
from tests.api.support import gated, problem_of, transform

WHO = {
    "name": "who",
    "settings": {"concurrency": {"key": "user:{{ execution.user.id }}", "key_limit": 5}},
    "nodes": [
        {
            "id": "me",
            "type": "transform",
            "config": {
                "output": {
                    "id": "{{ execution.user.id }}",
                    "email": "{{ execution.user.email }}",
                    "name": "{{ execution.user.name }}",
                }
            },
        }
    ],
}


async def named(api: Api, role: Role, name: str) -> Caller:
    caller = await api.caller(role)

    def rename(conn: Connection) -> None:
        conn.execute(update(users).where(users.c.id == caller.user_id).values(name=name))

    await api.store.write(rename)
    return caller


async def test_templates_see_the_authenticated_user_and_not_the_input(api: Api) -> None:
    ann = await named(api, Role.MEMBER, "Ann Example")
    await api.create(WHO)
    # The input claims to be someone else, and a caller with no user_id in it is no 400.
    execution_id = await api.execute("who", {"user_id": api.owner.user_id}, api.as_(ann))
    row = await api.until_finished(execution_id)
    assert row["status"] == "succeeded", row["error"]
    assert row["concurrency_key"] == f"user:{ann.user_id}"
    assert row["created_by"] == ann.user_id
    assert row["result"] == {"me": {"id": ann.user_id, "email": ann.email, "name": "Ann Example"}}


async def test_retry_runs_for_the_caller_who_retries(api: Api) -> None:
    ann = await named(api, Role.MEMBER, "Ann")
    definition = {**WHO, "nodes": [*WHO["nodes"], {"id": "boom", "type": "fail", "config": {}}]}
    await api.create(definition)
    first = await api.until_finished(await api.execute("who", {}))
    assert first["status"] == "failed"
    response = await api.as_(ann).post(f"{api.ws()}/executions/{first['id']}/retry")
    assert response.status_code == 202, response.text
    again = await api.until_finished(response.json()["execution_id"])
    assert again["created_by"] == ann.user_id
    assert again["concurrency_key"] == f"user:{ann.user_id}"


async def _list(api: Api, **params: Any) -> list[str]:
    response = await api.http.get(f"{api.ws()}/executions", params=params)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_lists_filter_by_email_and_user_stats_name_the_user(api: Api) -> None:
    ann = await named(api, Role.MEMBER, "Ann Example")
    await api.create(transform("counted"))
    mine = await api.execute("counted")
    hers = await api.execute("counted", client=api.as_(ann))
    for execution_id in (mine, hers):
        await api.until_finished(execution_id)
    assert await _list(api, user=ann.email) == [hers]
    assert await _list(api, user=ann.email.upper()) == [hers]
    assert await _list(api, user=api.owner.email) == [mine]
    assert await _list(api, user="nobody@example.com") == []
    response = await api.http.get(f"{api.ws()}/stats/users")
    assert response.status_code == 200
    per_user = {r["user_id"]: (r["email"], r["name"], r["executions"]) for r in response.json()}
    assert per_user == {
        ann.user_id: (ann.email, "Ann Example", 1),
        api.owner.user_id: (api.owner.email, "", 1),
    }


async def test_the_per_user_limit_is_an_admin_setting_copied_at_enqueue(api: Api) -> None:
    url = api.ws()
    assert (await api.http.get(url)).json()["max_running_per_user"] == 10  # the seed default
    member = await api.caller(Role.MEMBER)
    problem_of(await api.as_(member).patch(url, json={"max_running_per_user": 1}), 403)
    problem_of(await api.http.patch(url, json={"max_running_per_user": 0}), 422)
    response = await api.http.patch(url, json={"max_running_per_user": 1})
    assert response.status_code == 200 and response.json()["max_running_per_user"] == 1

    await api.create(gated("held", "open"))
    first = await api.execute("held")
    await api.until_status(first, "running")
    second = await api.execute("held")
    # Another user's execution is not held back by the owner's limit.
    theirs = await api.execute("held", client=api.as_(member))
    await api.until_status(theirs, "running")
    detail = (await api.http.get(f"{url}/executions/{second}")).json()
    assert detail["status"] == "queued"
    assert detail["blocked_reason"] == "its user's running executions at 1/1"
    api.gate("open").set()
    for execution_id in (first, second, theirs):
        assert (await api.until_finished(execution_id))["status"] == "succeeded"
    assert (await api.store.execution_row(second))["user_limit"] == 1

    response = await api.http.patch(url, json={"max_running_per_user": None})
    assert response.json()["max_running_per_user"] is None
    later = await api.execute("held")
    assert (await api.store.execution_row(later))["user_limit"] is None


async def test_the_outbound_allowlist_is_an_admin_setting_checked_when_set(api: Api) -> None:
    url = api.ws()
    assert (await api.http.get(url)).json()["outbound_allowlist"] == []
    member = await api.caller(Role.MEMBER)
    problem_of(await api.as_(member).patch(url, json={"outbound_allowlist": ["a.example"]}), 403)
    bad = await api.http.patch(url, json={"outbound_allowlist": ["not a host!"]})
    assert bad.status_code == 400 and "not a host!" in bad.text
    good = await api.http.patch(url, json={"outbound_allowlist": ["*.example.com", "10.1.0.0/16"]})
    assert good.status_code == 200
    assert good.json()["outbound_allowlist"] == ["*.example.com", "10.1.0.0/16"]
    cleared = await api.http.patch(url, json={"outbound_allowlist": []})
    assert cleared.json()["outbound_allowlist"] == []
