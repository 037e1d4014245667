"""Authorization, generated from the OpenAPI spec: every route refuses anonymous callers
(except an explicit allow-list), hides other workspaces' objects behind 404s, and enforces
roles. Then credentials themselves: API keys capped by their user's role, revocation,
login sessions and logout.

A route this file cannot fill (a path parameter it does not know, a body it has no example
for) fails the tests: new routes must be covered here."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from conveyor.api.throttles import Throttles, ThrottleSettings
from conveyor.store import accounts, inbox
from conveyor.store.accounts import Role
from tests.api.conftest import A, Api, B, Caller
from tests.api.support import API, problem_of, transform, waiting

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", f"{API}/auth/login"),
}
WS = f"{API}/workspaces/{{ws}}"
# Public by design, with an auth of its own per webhook (signatures, tokens): its refusals
# are tested in tests/e2e/test_webhooks.py; here only that it never asks for API credentials.
HOOK = "/hooks/{token}"
ADMIN_ONLY = {
    ("PUT", f"{WS}/members"),
    ("DELETE", f"{WS}/members/{{user_id}}"),
    ("GET", f"{WS}/api-keys"),
    ("POST", f"{WS}/api-keys"),
    ("DELETE", f"{WS}/api-keys/{{key_id}}"),
    ("PATCH", WS),
}
# Routes the brief names explicitly; they must be among the generated checks.
VIEWER_REFUSED = {
    ("POST", f"{WS}/workflows/{{workflow}}/execute"),
    ("POST", f"{WS}/executions/{{execution_id}}/cancel"),
    ("POST", f"{WS}/executions/bulk"),
    ("DELETE", f"{WS}/executions/{{execution_id}}"),
    ("PUT", f"{WS}/workflows/{{workflow}}"),
    ("POST", f"{WS}/api-keys"),
}
PARAM = re.compile(r"{([^}]+)}")


@dataclass
class World:
    """Real objects in two workspaces: what path parameters are filled with."""

    owner_a: Caller
    owner_b: Caller
    values_a: dict[str, str]
    values_b: dict[str, str]


def bodies(world: World) -> dict[tuple[str, str], Any]:
    """A valid body for every route that takes one (valid, so that a 404 or 403 is not
    masked by a 422, and nothing else could explain the answer)."""
    return {
        ("POST", f"{API}/auth/login"): {"email": world.owner_a.email, "password": "x" * 12},
        ("POST", f"{API}/workspaces"): {"name": "made-by-the-sweep"},
        ("PUT", f"{WS}/members"): {"email": world.owner_a.email, "role": "owner"},
        ("PATCH", WS): {"max_running_per_user": 10},
        ("POST", f"{WS}/api-keys"): {"name": "sweep", "role": "viewer"},
        ("POST", f"{WS}/workflows"): {"definition": transform("made-by-the-sweep")},
        ("PUT", f"{WS}/workflows/{{workflow}}"): {"definition": waiting("wf")},
        ("POST", f"{WS}/workflows/{{workflow}}/execute"): {"input": {}},
        ("POST", f"{WS}/validate"): {"definition": transform("checked-by-the-sweep")},
        ("POST", f"{WS}/generate"): {"description": "a workflow the sweep never drafts"},
        ("POST", f"{WS}/executions/{{execution_id}}/replay"): {"from_node": "before"},
        ("POST", f"{WS}/executions/{{execution_id}}/signal"): {"name": "go"},
        ("POST", f"{WS}/executions/bulk"): {"action": "cancel", "filter": {}, "dry_run": True},
        ("POST", f"{WS}/workflows/{{workflow}}/schedules"): {
            "type": "schedule",
            "id": "sweep",
            "every": 3600,
        },
        ("POST", f"{WS}/schedules/{{schedule_id}}/backfill"): {
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T03:00:00Z",
            "dry_run": True,
        },
        ("POST", f"{WS}/workflows/{{workflow}}/webhooks"): {
            "type": "webhook",
            "id": "sweep",
            "auth": {"mode": "none"},
        },
        ("POST", f"{WS}/webhooks/{{webhook_id}}/secret"): {},
        ("POST", f"{WS}/credentials"): {
            "name": "sweep",
            "type": "bearer",
            "data": {"token": "t" * 12},
        },
        ("PUT", f"{WS}/credentials/{{name}}"): {"data": {"token": "u" * 12}},
    }


def operations(api: Api) -> list[tuple[str, str]]:
    spec = api.app.openapi()
    found = [
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete") and path != HOOK
    ]
    assert len(found) >= 30, found
    return found


def requires_body(api: Api, method: str, path: str) -> bool:
    return "requestBody" in api.app.openapi()["paths"][path][method.lower()]


def fill(path: str, values: dict[str, str]) -> str:
    unknown = [p for p in PARAM.findall(path) if p not in values]
    if unknown:
        pytest.fail(
            f"{path} has path parameters {unknown} this test does not know how to fill: "
            "cover the new route in tests/api/test_auth.py"
        )
    return PARAM.sub(lambda m: values[m.group(1)], path)


def body_for(api: Api, world: World, method: str, path: str) -> Any:
    known = bodies(world)
    if (method, path) in known:
        return known[(method, path)]
    if requires_body(api, method, path):
        pytest.fail(f"{method} {path} takes a body this test has no example for: add one")
    return None


async def call(client: httpx.AsyncClient, method: str, url: str, body: Any) -> httpx.Response:
    """Send and read the answer; a stream is closed right after its status arrives."""
    if body is None:
        request = client.build_request(method, url)
    else:
        request = client.build_request(method, url, json=body)
    async with asyncio.timeout(10):
        response = await client.send(request, stream=True)
        try:
            if not response.headers.get("content-type", "").startswith("text/event-stream"):
                await response.aread()
        finally:
            await response.aclose()
    return response


def problem_or_none(response: httpx.Response, status: int) -> str | None:
    """None when ``response`` is the problem+json ``status``; else what is wrong."""
    if response.status_code != status:
        return f"{response.status_code} ({response.headers.get('content-type')})"
    try:
        problem_of(response, status)
    except AssertionError as exc:
        return f"{response.status_code} {response.headers.get('content-type')}: {exc}"
    return None


async def session_token(api: Api, caller: Caller) -> str:
    store = api.store
    return await store.write(
        accounts.create_session, caller.user_id, store.clock.now(), timedelta(hours=1)
    )


async def session_headers(api: Api, caller: Caller) -> dict[str, str]:
    """What the dashboard sends: the session cookie and the session's CSRF token."""
    token = await session_token(api, caller)
    return {"Cookie": f"conveyor_session={token}", "X-CSRF-Token": accounts.csrf_token(token)}


async def build_world(api: Api) -> World:
    owner_b = await api.caller(Role.OWNER, B)
    as_b = api.as_(owner_b)
    values = {}
    for who, client, workspace in ((api.owner, api.http, A), (owner_b, as_b, B)):
        created = await client.post(
            f"{api.ws(workspace)}/workflows", json={"definition": waiting("wf")}
        )
        assert created.status_code == 201, created.text
        execution_id = await api.execute("wf", client=client, workspace=workspace)
        await api.until_status(execution_id, "waiting")
        triggers = {}
        for kind, spec in (
            ("schedules", {"type": "schedule", "id": "s", "every": 3600}),
            ("webhooks", {"type": "webhook", "id": "h", "auth": {"mode": "header"}}),
        ):
            made = await client.post(f"{api.ws(workspace)}/workflows/wf/{kind}", json=spec)
            assert made.status_code == 201, made.text
            triggers[kind] = made.json()["id"]
        # Named per workspace: B's credential name must not exist in A.
        credential = f"key-{workspace}"
        made = await client.post(
            f"{api.ws(workspace)}/credentials",
            json={"name": credential, "type": "bearer", "data": {"token": "t" * 12}},
        )
        assert made.status_code == 201, made.text
        values[workspace] = {
            "ws": workspace,
            "workflow": created.json()["id"],  # an id: B's name may exist in A too
            "execution_id": execution_id,
            "key_id": who.key_id,
            "user_id": who.user_id,
            "version": "1",
            "a": "1",  # versions compared
            "b": "1",
            "node_id": "before",  # a step of the waiting execution
            "part": "output",
            "schedule_id": triggers["schedules"],
            "webhook_id": triggers["webhooks"],
            "name": credential,
            **await inbox_items(api, execution_id),
        }
    return World(api.owner, owner_b, values[A], values[B])


async def inbox_items(api: Api, execution_id: str) -> dict[str, str]:
    """A notification and a task made as a step of ``execution_id`` would make them."""
    store = api.store
    made = {}
    for key, make in (
        ("notification_id", inbox.create_notification),
        ("task_id", inbox.create_task),
    ):
        made[key] = await store.write(
            make, store.db.dialect, execution_id, key, {"title": "sweep"}, store.clock.now()
        )
    return made


@pytest.fixture
async def world(api: Api) -> World:
    return await build_world(api)


async def test_every_route_but_the_public_ones_answers_401_without_credentials(
    api: Api, world: World
) -> None:
    refused: set[tuple[str, str]] = set()
    wrong: list[str] = []
    # The sweep sends two invalid keys per route from one address: a limit sized to it (the
    # limit itself: test_throttles.py).
    sweep = ThrottleSettings(api_key_failures=2 * len(operations(api)) + 1)
    api.app.state.throttles = Throttles(sweep)
    for method, path in operations(api):
        url = fill(path, world.values_a)
        body = body_for(api, world, method, path)
        if (method, path) == ("POST", f"{API}/auth/login"):
            body = {"email": world.owner_a.email, "password": world.owner_a.password}
        for credentials in (
            {},
            {"Authorization": "Bearer cvk_bad_secret"},
            {"Authorization": "Bearer not-a-key"},
            {"Cookie": "conveyor_session=forged"},
        ):
            client = api.new_client(credentials)  # fresh: no cookie from a login
            response = await call(client, method, url, body)
            await client.aclose()
            if response.status_code != 401:
                if (method, path) not in PUBLIC:
                    wrong.append(f"{method} {path} with {credentials}: {response.status_code}")
                continue
            refused.add((method, path))
            problem = problem_or_none(response, 401)
            if problem:
                wrong.append(f"{method} {path}: {problem}")
            elif "Bearer" not in response.headers.get("www-authenticate", ""):
                wrong.append(f"{method} {path}: 401 without WWW-Authenticate: Bearer")
    not_refused = set(operations(api)) - refused
    assert not wrong, "\n".join(wrong)
    assert not_refused == PUBLIC


async def test_the_webhook_route_never_asks_for_api_credentials(api: Api) -> None:
    assert HOOK in api.app.openapi()["paths"]
    client = api.new_client({"Authorization": "Bearer cvk_bad_secret"})
    response = await client.post("/hooks/no-such-token", json={})
    assert response.status_code == 404, response.text
    assert "www-authenticate" not in response.headers


async def test_the_public_routes_answer_without_credentials(api: Api, world: World) -> None:
    client = api.new_client()
    for method, path in sorted(PUBLIC):
        body = None
        if path.endswith("/login"):
            body = {"email": world.owner_a.email, "password": world.owner_a.password}
        response = await call(client, method, path, body)
        assert response.status_code == 200, (method, path, response.text)


@pytest.mark.parametrize("credential", ["api-key", "session"])
async def test_another_workspaces_objects_are_404_never_403(
    api: Api, world: World, credential: str
) -> None:
    """A caller of workspace A, naming B or B's objects, learns nothing: 404 everywhere."""
    if credential == "api-key":
        headers = world.owner_a.headers
    else:
        headers = await session_headers(api, world.owner_a)
    client = api.new_client(headers)
    b_by_id = {**world.values_b, "ws": world.owner_b.workspace_id}
    mixed = {**world.values_b, "ws": A}  # my workspace, their objects
    wrong: list[str] = []
    checked = 0
    for method, path in operations(api):
        params = PARAM.findall(path)
        fill(path, world.values_a)  # every parameter is known
        if "ws" not in params:
            continue
        variants = [world.values_b, b_by_id]
        if set(params) - {"ws", "version"}:
            variants.append(mixed)
        for values in variants:
            url = fill(path, values)
            response = await call(client, method, url, body_for(api, world, method, path))
            checked += 1
            problem = problem_or_none(response, 404)
            if problem:
                wrong.append(f"{method} {url} ({path}): {problem}")
    assert checked >= 60
    assert not wrong, "\n".join(wrong)

    # and nothing in B changed
    as_b = api.as_(world.owner_b)
    b = api.ws(B)
    workflow = (await as_b.get(f"{b}/workflows/{world.values_b['workflow']}")).json()
    assert (workflow["status"], workflow["latest_version"]) == ("active", 1)
    names = [w["name"] for w in (await as_b.get(f"{b}/workflows")).json()["items"]]
    assert names == ["wf"]
    execution = (await as_b.get(f"{b}/executions/{world.values_b['execution_id']}")).json()
    assert execution["status"] == "waiting" and execution["blocked_reason"] is not None
    assert not execution["blocked_reason"].startswith("paused")
    assert (await as_b.get(f"{b}/executions")).json()["stats"]["total"] == 1
    keys = (await as_b.get(f"{b}/api-keys")).json()
    assert [k["revoked_at"] for k in keys] == [None]
    me = (await client.get(f"{API}/me")).json()
    assert [w["name"] for w in me["workspaces"]] == [A]


@pytest.mark.parametrize("credential", ["api-key", "session"])
async def test_roles_viewer_reads_only_and_member_cannot_manage_keys(
    api: Api, world: World, credential: str
) -> None:
    viewer = await api.caller(Role.VIEWER)
    member = await api.caller(Role.MEMBER)
    ops = operations(api)
    assert set(ops) >= VIEWER_REFUSED
    assert set(ops) >= ADMIN_ONLY
    wrong: list[str] = []
    for who, refused in (
        (viewer, {(m, p) for m, p in ops if p.startswith(WS) and (m != "GET")} | ADMIN_ONLY),
        (member, ADMIN_ONLY),
    ):
        if credential == "api-key":
            client = api.as_(who)
        else:
            client = api.new_client(await session_headers(api, who))
        for method, path in ops:
            if not path.startswith(WS):
                continue
            if (method, path) not in refused and (method != "GET" or who is member):
                continue  # allowed writes would change the world; reads are checked below
            url = fill(path, world.values_a)
            response = await call(client, method, url, body_for(api, world, method, path))
            if (method, path) in refused:
                problem = problem_or_none(response, 403)
                if problem:
                    wrong.append(f"{who.role.value} {method} {path}: {problem}")
            elif response.status_code != 200:
                wrong.append(f"{who.role.value} {method} {path}: {response.status_code}")
    assert not wrong, "\n".join(wrong)
    # nothing the viewer tried happened
    execution = await api.store.execution_row(world.values_a["execution_id"])
    assert execution["status"] == "waiting" and not execution["paused"]

    as_member = api.as_(member)
    allowed = await as_member.post(
        f"{api.ws()}/workflows/{world.values_a['workflow']}/execute", json={"input": {}}
    )
    assert allowed.status_code == 202, allowed.text


async def test_an_api_key_never_exceeds_its_users_role(api: Api, world: World) -> None:
    execute = f"{api.ws()}/workflows/{world.values_a['workflow']}/execute"
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
        accounts.set_role, api.owner.user_id, world.owner_b.workspace_id, Role.OWNER, now
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
