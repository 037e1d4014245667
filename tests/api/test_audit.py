"""The audit log: every mutating API and dashboard route writes exactly one entry when it
succeeds and none when it is refused (generated from the route table, so a new route is
covered or fails here); admins read it, filtered and paged; nobody else does."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy import Connection, func, select

from conveyor.api.audit import READ_ONLY
from conveyor.store import accounts
from conveyor.store.accounts import Role
from conveyor.store.tables import audit_log
from conveyor.web import pages, signin
from tests.api.conftest import A, Api, B
from tests.api.support import API, problem_of, transform
from tests.api.sweep import (
    HOOK,
    WS,
    body_for,
    build_world,
    call,
    fill,
    operations,
    session_token,
)

# Every mutating API route and the action it records: a new route fails the sweep below
# until it is named here (and so is seen to be audited).
API_ACTIONS = {
    ("POST", f"{API}/auth/login"): "signin.succeeded",
    ("POST", f"{API}/auth/logout"): "signout",
    ("POST", f"{API}/workspaces"): "workspace.create",
    ("PATCH", WS): "workspace.update",
    ("PUT", f"{WS}/members"): "member.add",
    ("DELETE", f"{WS}/members/{{user_id}}"): "member.remove",
    ("POST", f"{WS}/api-keys"): "api_key.create",
    ("DELETE", f"{WS}/api-keys/{{key_id}}"): "api_key.revoke",
    ("POST", f"{WS}/credentials"): "credential.create",
    ("PUT", f"{WS}/credentials/{{name}}"): "credential.set",
    ("DELETE", f"{WS}/credentials/{{name}}"): "credential.delete",
    ("POST", f"{WS}/workflows"): "workflow.create",
    ("PUT", f"{WS}/workflows/{{workflow}}"): "workflow.apply",
    ("POST", f"{WS}/workflows/{{workflow}}/activate"): "workflow.activate",
    ("POST", f"{WS}/workflows/{{workflow}}/pause"): "workflow.pause",
    ("POST", f"{WS}/workflows/{{workflow}}/archive"): "workflow.archive",
    ("POST", f"{WS}/workflows/{{workflow}}/execute"): "workflow.execute",
    ("POST", f"{WS}/executions/bulk"): "execution.bulk",
    ("DELETE", f"{WS}/executions/{{execution_id}}"): "execution.delete",
    ("POST", f"{WS}/executions/{{execution_id}}/cancel"): "execution.cancel",
    ("POST", f"{WS}/executions/{{execution_id}}/retry"): "execution.retry",
    ("POST", f"{WS}/executions/{{execution_id}}/replay"): "execution.replay",
    ("POST", f"{WS}/executions/{{execution_id}}/pause"): "execution.pause",
    ("POST", f"{WS}/executions/{{execution_id}}/resume"): "execution.resume",
    ("POST", f"{WS}/executions/{{execution_id}}/signal"): "execution.signal",
    ("POST", f"{WS}/workflows/{{workflow}}/schedules"): "schedule.create",
    ("DELETE", f"{WS}/schedules/{{schedule_id}}"): "schedule.delete",
    ("POST", f"{WS}/schedules/{{schedule_id}}/enable"): "schedule.enable",
    ("POST", f"{WS}/schedules/{{schedule_id}}/disable"): "schedule.disable",
    ("POST", f"{WS}/schedules/{{schedule_id}}/backfill"): "schedule.backfill",
    ("POST", f"{WS}/workflows/{{workflow}}/webhooks"): "webhook.create",
    ("DELETE", f"{WS}/webhooks/{{webhook_id}}"): "webhook.delete",
    ("POST", f"{WS}/webhooks/{{webhook_id}}/enable"): "webhook.enable",
    ("POST", f"{WS}/webhooks/{{webhook_id}}/disable"): "webhook.disable",
    ("POST", f"{WS}/webhooks/{{webhook_id}}/secret"): "webhook.rotate_secret",
    ("POST", f"{WS}/notifications/{{notification_id}}/read"): "notification.read",
    ("POST", f"{WS}/notifications/read-all"): "notification.read_all",
    ("POST", f"{WS}/tasks/{{task_id}}/done"): "task.done",
    ("POST", f"{WS}/tasks/{{task_id}}/reopen"): "task.reopen",
}
PAGE_ACTIONS = {
    "/w/{ws}/workflows": "workflow.create",
    "/w/{ws}/workflows/{name}/{action}": "workflow.pause",
    "/w/{ws}/inbox/notifications/{notification_id}/read": "notification.read",
    "/w/{ws}/inbox/notifications/read-all": "notification.read_all",
    "/w/{ws}/inbox/tasks/{task_id}/{action}": "task.done",
    "/w/{ws}/settings/limits": "workspace.update",
    "/w/{ws}/settings/members": "member.add",
    "/w/{ws}/settings/members/{user_id}/remove": "member.remove",
    "/w/{ws}/settings/api-keys": "api_key.create",
    "/w/{ws}/settings/api-keys/{key_id}/revoke": "api_key.revoke",
    "/w/{ws}/credentials": "credential.create",
    "/w/{ws}/credentials/{name}": "credential.set",
    "/w/{ws}/credentials/{name}/delete": "credential.delete",
    "/signin": "signin.failed",  # the sweep's password is wrong: recorded all the same
    "/signout": "signout",
}
CANARY = "canary-secret-3f9a1c"
PAGE_WORKFLOW = "name: from-the-page\nnodes:\n  - {id: t, type: transform, config: {output: 1}}\n"


def page_forms(canary: str) -> dict[str, dict[str, str]]:
    return {
        "/w/{ws}/workflows": {"yaml": PAGE_WORKFLOW},
        "/w/{ws}/settings/limits": {"max_running_per_user": "7"},
        "/w/{ws}/settings/members": {"email": "", "role": "viewer"},  # email filled in
        "/w/{ws}/settings/api-keys": {"name": "page key", "role": "viewer"},
        "/w/{ws}/credentials": {"type": "bearer", "name": "page-cred", "field.token": canary},
        "/w/{ws}/credentials/{name}": {"field.token": canary + "-2"},
        "/signin": {"email": "nobody@example.com", "password": canary},
    }


def page_routes() -> list[str]:
    """The dashboard's POST routes, from its routers (as the app mounts them)."""
    found: list[str] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                if set(route.methods) - {"GET", "HEAD"}:
                    found.append(route.path)
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes)

    walk(pages.router.routes)
    walk(signin.router.routes)
    return found


async def entries(api: Api) -> list[dict[str, Any]]:
    def read(conn: Connection) -> list[dict[str, Any]]:
        return [
            dict(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings()
        ]

    return await api.store.read(read)


async def count(api: Api) -> int:
    def read(conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())

    return await api.store.read(read)


def mutating(api: Api) -> list[tuple[str, str]]:
    found = [
        (m, p)
        for m, p in operations(api)
        if m != "GET" and p != HOOK and p.removeprefix(API) not in READ_ONLY
    ]
    return sorted(found, key=lambda op: op[0] == "DELETE")  # deletions last


async def test_every_mutating_api_route_writes_exactly_one_entry(api: Api) -> None:
    world = await build_world(api)
    assert set(mutating(api)) == set(API_ACTIONS), "name each new route's action above"
    # Things the sweep may remove without losing its own access.
    spare = await api.caller(Role.VIEWER)
    values = {**world.values_a, "user_id": spare.user_id, "key_id": spare.key_id}
    wrong: list[str] = []
    recorded = 0
    for method, path in mutating(api):
        before = await count(api)
        response = await call(
            api.http, method, fill(path, values), body_for(api, world, method, path)
        )
        new = (await entries(api))[before:]
        failed_login = path.endswith("/auth/login") and response.status_code == 401
        expected = API_ACTIONS[(method, path)] if failed_login is False else "signin.failed"
        if response.status_code >= 400 and not failed_login:
            if new:
                wrong.append(f"{method} {path} refused ({response.status_code}) but recorded")
            continue
        actions = [e["action"] for e in new]
        if actions != [expected]:
            wrong.append(f"{method} {path} ({response.status_code}): {actions}, not {expected}")
            continue
        recorded += 1
        entry = new[0]
        assert entry["channel"] == "api" and entry["ip"] == "127.0.0.1", entry
        if not failed_login:
            assert entry["actor_api_key_id"] == api.owner.key_id, entry
        assert entry["actor_user_id"] == api.owner.user_id, entry
    assert not wrong, "\n".join(wrong)
    assert recorded >= 30, recorded


async def test_every_mutating_dashboard_route_writes_exactly_one_entry(api: Api) -> None:
    from conveyor import web

    web.install(api.app)
    world = await build_world(api)
    assert set(page_routes()) == set(PAGE_ACTIONS), "name each new page form's action above"
    spare = await api.caller(Role.VIEWER)
    extra = await api.caller(Role.MEMBER)
    token = await session_token(api, world.owner_a)
    browser = api.new_client({"Cookie": f"conveyor_session={token}", "User-Agent": "sweep/1"})
    forms = page_forms(CANARY)
    forms["/w/{ws}/settings/members"]["email"] = extra.email
    values = {
        **world.values_a,
        "user_id": spare.user_id,
        "key_id": spare.key_id,
        "action": "pause",
    }
    order = sorted(page_routes(), key=lambda p: (p == "/signout", p.endswith("/delete")))
    wrong: list[str] = []
    for path in order:
        own = {"action": "done"} if "/tasks/" in path else {}
        if "/workflows/" in path:
            own = {"name": "wf"}
        url = fill(path, {**values, **own})
        form = {"csrf_token": accounts.csrf_token(token), **forms.get(path, {})}
        before = await count(api)
        response = await browser.post(url, data=form)
        new = (await entries(api))[before:]
        expected = PAGE_ACTIONS[path]
        if path == "/w/{ws}/workflows/{name}/{action}":
            assert new and new[0]["target_id"] == "wf", new
        actions = [e["action"] for e in new]
        if response.status_code >= 400 and path != "/signin":
            wrong.append(f"POST {path}: {response.status_code} (the sweep should succeed)")
        elif actions != [expected]:
            wrong.append(f"POST {path} ({response.status_code}): {actions}, not {expected}")
        elif new[0]["channel"] != "dashboard" or new[0]["user_agent"] != "sweep/1":
            wrong.append(f"POST {path}: {new[0]}")
    assert not wrong, "\n".join(wrong)
    dump = repr(await entries(api))
    assert CANARY not in dump, "a secret reached the audit log"

    # The page: the same entries, for admins; the settings page links to it.
    owner = api.new_client({"Cookie": f"conveyor_session={await session_token(api, api.owner)}"})
    settings = await owner.get("/w/default/settings")
    assert 'href="/w/default/audit"' in settings.text
    shown = await owner.get("/w/default/audit?action=credential.*")
    assert shown.status_code == 200, shown.text
    assert shown.text.count('data-action="credential.') == 4, shown.text  # + the world's
    assert "<script>" not in shown.text and CANARY not in shown.text
    reader = await api.caller(Role.VIEWER)  # the sweep removed the spare one
    viewer = api.new_client({"Cookie": f"conveyor_session={await session_token(api, reader)}"})
    assert (await viewer.get("/w/default/audit")).status_code == 403
    assert 'href="/w/default/audit"' not in (await viewer.get("/w/default/settings")).text


async def test_admins_read_the_log_filtered_and_paged_and_no_one_else(api: Api) -> None:
    ws = api.ws()
    await api.create(transform("audited"))
    first = await api.execute("audited")
    await api.until_finished(first)
    for _ in range(3):
        await api.execute("audited")
    client = api.new_client()
    wrong_login = {"email": api.owner.email, "password": "not it at all"}
    assert (await client.post(f"{API}/auth/login", json=wrong_login)).status_code == 401
    stranger = {"email": "stranger@example.com", "password": "whatever it is"}
    assert (await client.post(f"{API}/auth/login", json=stranger)).status_code == 401
    right = {"email": api.owner.email, "password": api.owner.password}
    assert (await client.post(f"{API}/auth/login", json=right)).status_code == 200

    listed = (await api.http.get(f"{ws}/audit")).json()
    actions = [e["action"] for e in listed["items"]]
    assert actions == ["signin.succeeded", "signin.failed"] + ["workflow.execute"] * 4 + [
        "workflow.create"
    ], actions  # newest first; the stranger's failed sign-in is no member's
    assert listed["has_more"] is False and listed["next_cursor"] is None
    execute = listed["items"][2]
    assert execute["target"]["type"] == "execution" and execute["actor"]["display"] == (
        api.owner.email
    )
    assert execute["details"]["workflow"] == "audited"
    source = execute["source"]
    assert (source["channel"], source["ip"]) == ("api", "127.0.0.1"), source
    assert source["user_agent"].startswith("python-httpx"), source

    async def all_pages(query: str) -> list[int]:
        ids: list[int] = []
        cursor = ""
        while True:
            page = await api.http.get(f"{ws}/audit?limit=2&{query}{cursor}")
            assert page.status_code == 200, page.text
            body = page.json()
            ids += [e["id"] for e in body["items"]]
            if not body["has_more"]:
                return ids
            cursor = f"&cursor={body['next_cursor']}"

    assert await all_pages("") == [e["id"] for e in listed["items"]]
    executes = await all_pages("action=workflow.execute")
    assert len(executes) == 4
    assert len(await all_pages("action=signin.*")) == 2
    assert len(await all_pages(f"actor={api.owner.email}")) == 7
    assert len(await all_pages(f"actor={api.owner.key_id}")) == 5
    newest = listed["items"][0]["at"].replace("+00:00", "Z")
    assert len(await all_pages(f"until={newest}")) == 6
    assert len(await all_pages(f"since={newest}")) == 1
    problem_of(await api.http.get(f"{ws}/audit?cursor=abc"), 400)
    problem_of(await api.http.get(f"{ws}/audit?since=yesterday"), 422)

    for role in (Role.MEMBER, Role.VIEWER):
        caller = api.as_(await api.caller(role))
        problem_of(await caller.get(f"{ws}/audit"), 403)
    admin = api.as_(await api.caller(Role.ADMIN))
    assert (await admin.get(f"{ws}/audit")).status_code == 200
    outsider = api.as_(await api.caller(Role.OWNER, B))
    problem_of(await outsider.get(f"{ws}/audit"), 404)
    assert A != B
