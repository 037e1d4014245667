"""Roles on every route that changes something in a workspace: a viewer is refused (403)
everywhere, a member wherever the route changes who may do what (members, API keys, the
workspace's settings: ``ADMIN_ONLY``), with an API key, a session and on the dashboard;
and the refused request changed nothing. Routes outside a workspace (logging in and out,
creating a workspace) need no role."""

from __future__ import annotations

import pytest

from tests.api.support import problem_of
from tests.security.routes import (
    ADMIN_ONLY,
    ENDPOINTS,
    MEMBER_PAGES,
    Endpoint,
    api_body,
    fill,
    form,
)
from tests.security.world import Person, World, page_refused, unchanged

pytestmark = pytest.mark.asyncio(loop_scope="session")

GUARDED = [e for e in ENDPOINTS if e.in_workspace and (e.changes or e.key in ADMIN_ONLY)]
CASES = [("viewer", e) for e in GUARDED] + [("member", e) for e in GUARDED if e.key in ADMIN_ONLY]


def who(world: World, role: str) -> Person:
    person: Person = getattr(world.a, role)
    return person


@pytest.mark.parametrize(
    ("role", "endpoint"),
    [c for c in CASES if c[1].kind == "api"],
    ids=[f"{r}-{e}" for r, e in CASES if e.kind == "api"],
)
async def test_an_api_route_refuses_a_role_below_its_own(
    world: World, role: str, endpoint: Endpoint
) -> None:
    """With the person's API key (a session reaches the same check: the pages below and
    tests/security/test_workspaces.py use sessions)."""
    person = who(world, role)
    url = fill(endpoint, world.a.values)
    async with unchanged(world, endpoint):
        body = api_body(endpoint, world)
        response = await world.call(person.bearer, endpoint.method, url, json=body)
        assert response.status_code == 403, (response.status_code, response.text)
        assert "your role" in problem_of(response, 403)["detail"]


@pytest.mark.parametrize(
    ("role", "endpoint"),
    [c for c in CASES if c[1].kind == "page"],
    ids=[f"{r}-{e}" for r, e in CASES if e.kind == "page"],
)
async def test_a_page_form_refuses_a_role_below_its_own(
    world: World, role: str, endpoint: Endpoint
) -> None:
    person = who(world, role)
    url = fill(endpoint, world.a.values)
    data = {**form(endpoint, world), "csrf_token": person.csrf}
    async with unchanged(world, endpoint):
        response = await world.call(person.cookie, endpoint.method, url, data=data)
        page_refused(response, 403)
        assert "your role" in response.text


async def test_every_classified_route_exists() -> None:
    assert {e.key for e in ENDPOINTS} >= ADMIN_ONLY | MEMBER_PAGES


READS = [e for e in ENDPOINTS if e.in_workspace and e.method == "GET"]


@pytest.mark.parametrize("role", ["viewer", "member"])
@pytest.mark.parametrize("endpoint", READS, ids=str)
async def test_a_read_is_open_to_every_role_unless_classified(
    world: World, endpoint: Endpoint, role: str
) -> None:
    """The other side of the matrix, so that it cannot drift: a route refusing a role it
    is not classified for (a new admin-only read) fails here until it is added to
    ``ADMIN_ONLY`` or ``MEMBER_PAGES``, and is then checked above."""
    person = who(world, role)
    headers = person.bearer if endpoint.kind == "api" else person.cookie
    response = await world.call(headers, "GET", fill(endpoint, world.a.values))
    refused = endpoint.key in ADMIN_ONLY or (role == "viewer" and endpoint.key in MEMBER_PAGES)
    if refused:
        assert response.status_code == 403, response.text
    else:
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500, response.text


ESCALATIONS = {
    "make a member owner": ("PUT", "members", "member", "owner"),
    "demote an owner": ("PUT", "members", "owner", "viewer"),
    "remove an owner": ("DELETE", "members/{owner}", None, None),
    "mint an owner key": ("POST", "api-keys", None, "owner"),
}


@pytest.mark.parametrize("surface", ["api", "page"])
@pytest.mark.parametrize("attempt", list(ESCALATIONS))
async def test_an_admin_cannot_reach_above_their_role(
    world: World, attempt: str, surface: str
) -> None:
    """Roles in bodies and forms: an admin grants, keys and removes up to admin only;
    only owners make, demote or remove owners (``accounts.check_grant``)."""
    a = world.a
    method, path, whose, role = ESCALATIONS[attempt]
    admin = a.admin
    path = path.replace("{owner}", a.owner.user_id)
    fields: dict[str, str] = {}
    if path.startswith("api-keys"):
        fields = {"name": "escalate", "role": str(role)}
    elif whose is not None:
        fields = {"email": who(world, whose).email, "role": str(role)}
    changed = Endpoint(method, path, surface)
    async with unchanged(world, changed):
        if surface == "api":
            url = f"/api/v1/workspaces/{a.name}/{path}"
            response = await world.call(admin.bearer, method, url, json=fields or None)
            problem_of(response, 403)
        else:
            url = f"/w/{a.name}/settings/{path}"
            if method == "DELETE":
                url += "/remove"
            data = {**fields, "csrf_token": admin.csrf}
            response = await world.call(admin.cookie, "POST", url, data=data)
            page_refused(response, 403)
