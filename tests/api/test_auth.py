"""Credentials themselves: API keys capped by their user's role, revocation, login sessions
and logout. Every route's refusals (no credentials, another workspace, a role too low) are
the security suite's, generated from the route table: tests/security/."""

from __future__ import annotations

from conveyor.store import accounts
from conveyor.store.accounts import Role
from tests.api.conftest import A, Api, B
from tests.api.support import API, problem_of, transform


async def test_an_api_key_never_exceeds_its_users_role(api: Api) -> None:
    await api.create(transform("wf"))
    owner_b = await api.caller(Role.OWNER, B)
    execute = f"{api.ws()}/workflows/wf/execute"
    # a viewer holding an owner-role key (made behind the API's back) is still a viewer
    viewer = await api.caller(Role.VIEWER, key_role=Role.OWNER)
    problem_of(await api.as_(viewer).post(execute, json={"input": {}}), 403)
    problem_of(await api.as_(viewer).get(f"{api.ws()}/api-keys"), 403)
    # an owner's viewer-role key is a viewer
    capped = await api.caller(Role.OWNER, key_role=Role.VIEWER)
    problem_of(await api.as_(capped).post(execute, json={"input": {}}), 403)
    assert (await api.as_(capped).get(f"{api.ws()}/workflows")).status_code == 200
    # a demoted user's keys are demoted with them
    demoted = await api.caller(Role.ADMIN)
    client = api.as_(demoted)
    assert (await client.get(f"{api.ws()}/api-keys")).status_code == 200
    now = api.store.clock.now()
    await api.store.write(
        accounts.set_role, demoted.user_id, demoted.workspace_id, Role.VIEWER, now
    )
    problem_of(await client.get(f"{api.ws()}/api-keys"), 403)
    problem_of(await client.post(execute, json={"input": {}}), 403)
    # the API refuses to mint a key above the caller's role
    admin = await api.caller(Role.ADMIN)
    too_high = await api.as_(admin).post(
        f"{api.ws()}/api-keys", json={"name": "escalate", "role": "owner"}
    )
    problem_of(too_high, 403)
    problem_of(
        await api.as_(admin).put(
            f"{api.ws()}/members", json={"email": admin.email, "role": "owner"}
        ),
        403,
    )
    # a key acts in its own workspace only, even for a user who is owner elsewhere too
    await api.store.write(
        accounts.set_role, api.owner.user_id, owner_b.workspace_id, Role.OWNER, now
    )
    problem_of(await api.http.get(f"{api.ws(B)}/workflows"), 404)
    problem_of(
        await api.http.post(f"{API}/workspaces", json={"name": "by-a-key"}), 403
    )  # keys cannot create workspaces


async def test_a_key_made_through_the_api_works_until_revoked(api: Api) -> None:
    created = await api.http.post(f"{api.ws()}/api-keys", json={"name": "ci", "role": "member"})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("cvk_") and "key_hash" not in created.json()
    assert created.json()["role"] == "member"
    client = api.new_client({"Authorization": f"Bearer {key}"})
    assert (await client.get(f"{api.ws()}/workflows")).status_code == 200
    listed = (await api.http.get(f"{api.ws()}/api-keys")).json()
    assert created.json()["id"] in [k["id"] for k in listed]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert not any(key in str(v) for k in listed for v in k.values())

    revoked = await api.http.delete(f"{api.ws()}/api-keys/{created.json()['id']}")
    assert revoked.status_code == 204
    problem_of(await client.get(f"{api.ws()}/workflows"), 401)
    listed = {k["id"]: k for k in (await api.http.get(f"{api.ws()}/api-keys")).json()}
    assert listed[created.json()["id"]]["revoked_at"] is not None
    problem_of(await api.http.delete(f"{api.ws()}/api-keys/{'0' * 32}"), 404)
    member = await api.caller(Role.MEMBER)
    problem_of(await api.as_(member).delete(f"{api.ws()}/api-keys/{api.owner.key_id}"), 403)


async def test_login_sets_a_session_cookie_and_logout_ends_it(api: Api) -> None:
    client = api.new_client()
    wrong = await client.post(
        f"{API}/auth/login", json={"email": api.owner.email, "password": "wrong password"}
    )
    problem_of(wrong, 401)
    unknown = await client.post(
        f"{API}/auth/login", json={"email": "nobody@example.com", "password": "whatever1"}
    )
    problem_of(unknown, 401)
    assert "conveyor_session" not in client.cookies

    response = await client.post(
        f"{API}/auth/login",
        json={"email": api.owner.email.upper(), "password": api.owner.password},
    )
    assert response.status_code == 200, response.text
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("conveyor_session=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert response.json()["email"] == api.owner.email
    assert response.json()["workspaces"] == [
        {"id": api.owner.workspace_id, "name": A, "role": "owner"}
    ]
    token = client.cookies["conveyor_session"]
    assert response.json()["csrf_token"] == accounts.csrf_token(token)
    me = await client.get(f"{API}/me")
    assert me.status_code == 200 and me.json()["id"] == api.owner.user_id
    assert me.json()["csrf_token"] == response.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = me.json()["csrf_token"]
    assert (await client.get(f"{api.ws()}/workflows")).status_code == 200

    # a session may create workspaces (API keys may not); the creator owns it
    made = await client.post(f"{API}/workspaces", json={"name": "fresh"})
    assert made.status_code == 201, made.text
    assert made.json()["role"] == "owner"
    problem_of(await client.post(f"{API}/workspaces", json={"name": "fresh"}), 400)
    assert (await client.get(f"{api.ws('fresh')}/workflows")).status_code == 200

    out = await client.post(f"{API}/auth/logout")
    assert out.status_code == 204
    assert "conveyor_session" not in client.cookies
    stale = api.new_client({"Cookie": f"conveyor_session={token}"})
    problem_of(await stale.get(f"{API}/me"), 401)
    problem_of(await stale.get(f"{api.ws()}/workflows"), 401)


async def test_problem_bodies_for_each_status(api: Api) -> None:
    await api.create(transform("p"))
    viewer = await api.caller(Role.VIEWER)
    cases = [
        (await api.new_client().get(f"{API}/me"), 401),
        (await api.as_(viewer).post(f"{api.ws()}/workflows/p/archive"), 403),
        (await api.http.get(f"{api.ws()}/workflows/missing"), 404),
        (await api.http.get(f"{api.ws('no-such-workspace')}/workflows"), 404),
        (await api.http.put(f"{api.ws()}/workflows/p", json={"definition": transform("q")}), 409),
        (await api.http.post(f"{api.ws()}/workflows", json={"definition": {"name": "x"}}), 422),
        (await api.http.get(f"{api.ws()}/executions", params={"cursor": "junk"}), 400),
        (await api.http.get(f"{API}/no/such/route"), 404),
        (await api.http.delete(f"{api.ws()}/workflows"), 405),
    ]
    for response, status in cases:
        body = problem_of(response, status)
        assert body["type"].startswith("https://"), body
