"""CSRF on everything a browser's session can change: every dashboard form (every non-GET
page route) and every changing API route called with the session cookie is refused (403)
without the session's CSRF token, or with another session's, and changes nothing.
Generalises tests/api/test_csrf.py (which checks the token itself and login's Origin) to
the whole route table. Signing in has no session yet: its form checks the Origin."""

from __future__ import annotations

import pytest

from tests.api.support import WebSocket, WebSocketRejected, problem_of
from tests.security.routes import ENDPOINTS, Endpoint, api_body, fill, form
from tests.security.world import World, page_refused, unchanged

pytestmark = pytest.mark.asyncio(loop_scope="session")

FORMS = [e for e in ENDPOINTS if e.kind == "page" and e.changes and not e.public]
API_CHANGES = [e for e in ENDPOINTS if e.kind == "api" and e.changes and not e.public]


def tokens(world: World) -> dict[str, str | None]:
    return {
        "none": None,
        "another session's": world.a.admin.csrf,
        "another workspace's owner's": world.b.owner.csrf,
    }


@pytest.mark.parametrize("endpoint", FORMS, ids=str)
async def test_a_dashboard_form_needs_its_sessions_csrf_token(
    world: World, endpoint: Endpoint
) -> None:
    owner = world.a.owner
    url = fill(endpoint, world.a.values)
    async with unchanged(world, endpoint):
        for name, token in tokens(world).items():
            data = form(endpoint, world)
            if token is not None:
                data["csrf_token"] = token
            response = await world.call(owner.cookie, endpoint.method, url, data=data)
            assert response.status_code == 403, (name, response.status_code)
            page_refused(response, 403)
            assert "CSRF" in response.text, name


@pytest.mark.parametrize("endpoint", API_CHANGES, ids=str)
async def test_an_api_route_called_with_the_session_cookie_needs_the_csrf_header(
    world: World, endpoint: Endpoint
) -> None:
    owner = world.a.owner
    url = fill(endpoint, world.a.values)
    async with unchanged(world, endpoint):
        for name, token in tokens(world).items():
            headers = dict(owner.cookie)
            if token is not None:
                headers["X-CSRF-Token"] = token
            response = await world.call(
                headers, endpoint.method, url, json=api_body(endpoint, world)
            )
            assert response.status_code == 403, (name, response.status_code, response.text)
            assert "CSRF" in problem_of(response, 403)["detail"], name


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://test.evil.example", "http://test:8080"]
)
async def test_the_sign_in_form_refuses_another_sites_page(world: World, origin: str) -> None:
    owner = world.a.owner
    data = {"email": owner.email, "password": owner.password}
    response = await world.call({"Origin": origin}, "POST", "/signin", data=data)
    page_refused(response, 403)
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    ("origin", "opened"),
    [
        (None, True),  # not a browser: nothing to hijack
        ("http://test", True),
        ("http://evil.example", False),
        ("http://sibling.test", False),
        ("null", False),
    ],
)
async def test_a_websocket_on_the_session_cookie_opens_from_this_sites_pages_only(
    world: World, origin: str | None, opened: bool
) -> None:
    """Cross-site WebSocket hijacking: browsers attach the cookie to a WebSocket handshake
    from any page of the same site (SameSite=Lax; sibling subdomains are the same site),
    and no same-origin policy keeps that page from reading the events. A GET needs no CSRF
    token, so the handshake's Origin is what tells the page apart. API keys are not
    affected: no browser attaches them by itself."""
    socket = next(e for e in ENDPOINTS if e.kind == "socket")
    headers = {"Host": "test", **world.a.owner.cookie}
    if origin is not None:
        headers["Origin"] = origin
    url = fill(socket, world.a.values)
    if opened:
        async with WebSocket(world.app, url, headers) as connected:
            await connected.send_json({"subscribe": "workspace"})
            assert await connected.receive_json() == {"subscribed": "workspace"}
    else:
        with pytest.raises(WebSocketRejected) as refused:
            async with WebSocket(world.app, url, headers):
                pass
        assert (refused.value.status, refused.value.reason) == (1008, "forbidden")
    # a key from another site's page is the caller's own doing: allowed
    keyed = {"Host": "test", "Origin": "http://evil.example", **world.a.owner.bearer}
    async with WebSocket(world.app, url, keyed) as connected:
        await connected.send_json({"subscribe": "workspace"})
        assert await connected.receive_json() == {"subscribed": "workspace"}
