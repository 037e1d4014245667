"""Without credentials every route is refused, except an explicit allowlist: an API route
answers 401 problem+json with ``WWW-Authenticate: Bearer``; a dashboard page (any method)
redirects to the sign-in page, which comes back to it; the WebSocket closes before its
handshake. Parametrized from the app's route table, so a new route is covered at once."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.api.support import WebSocket, WebSocketRejected, problem_of
from tests.security.routes import API, ENDPOINTS, PUBLIC, Endpoint, api_body, fill, form
from tests.security.world import World, page_refused, unchanged

pytestmark = pytest.mark.asyncio(loop_scope="session")

NO_CREDENTIALS = {
    "none": {},
    "unknown key": {"Authorization": "Bearer cvk_unknown_secret"},
    "not a key": {"Authorization": "Bearer not-a-key"},
    "forged session": {"Cookie": "conveyor_session=forged"},
}
GUARDED = [e for e in ENDPOINTS if not e.public]


@pytest.mark.parametrize("endpoint", [e for e in GUARDED if e.kind == "api"], ids=str)
async def test_an_api_route_answers_401_without_credentials(
    world: World, endpoint: Endpoint
) -> None:
    url = fill(endpoint, world.a.values)
    async with unchanged(world, endpoint):
        for name, headers in NO_CREDENTIALS.items():
            response = await world.call(
                headers, endpoint.method, url, json=api_body(endpoint, world)
            )
            assert response.status_code == 401, (name, response.text)
            problem_of(response, 401)
            assert response.headers.get("www-authenticate", "").startswith("Bearer"), name


@pytest.mark.parametrize("endpoint", [e for e in GUARDED if e.kind == "page"], ids=str)
async def test_a_page_sends_a_caller_without_a_session_to_sign_in(
    world: World, endpoint: Endpoint
) -> None:
    """API keys do not open pages: no browser holds one, and a page's forms rely on the
    session's CSRF token."""
    url = fill(endpoint, world.a.values)
    async with unchanged(world, endpoint):
        for name, headers in {**NO_CREDENTIALS, "an API key": world.a.owner.bearer}.items():
            data = form(endpoint, world) if endpoint.changes else None
            response = await world.call(headers, endpoint.method, url, data=data)
            if endpoint.key == ("POST", "/signout"):
                # no session to end: its CSRF check refuses it first
                page_refused(response, 403)
                continue
            assert response.status_code == 303, (name, response.status_code, response.text)
            assert response.headers["location"] == f"/signin?next={quote(url, safe='')}"


@pytest.mark.parametrize("endpoint", [e for e in GUARDED if e.kind == "socket"], ids=str)
async def test_a_websocket_closes_before_its_handshake_without_credentials(
    world: World, endpoint: Endpoint
) -> None:
    for name, headers in NO_CREDENTIALS.items():
        with pytest.raises(WebSocketRejected) as refused:
            async with WebSocket(world.app, fill(endpoint, world.a.values), headers) as socket:
                await socket.send_json({"subscribe": "workspace"})
        assert (refused.value.status, refused.value.reason) == (1008, "unauthorized"), name


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.public], ids=str)
async def test_a_public_route_answers_without_asking_for_credentials(
    world: World, endpoint: Endpoint
) -> None:
    url = fill(endpoint, world.a.values)
    body = api_body(endpoint, world)
    if endpoint.key == ("POST", f"{API}/auth/login"):
        body = {"email": world.a.viewer.email, "password": world.a.viewer.password}
    data = form(endpoint, world) if endpoint.kind == "page" and endpoint.changes else None
    for name, headers in NO_CREDENTIALS.items():  # wrong credentials are ignored, too
        response = await world.call(headers, endpoint.method, url, json=body, data=data)
        assert "www-authenticate" not in response.headers, name
        assert not response.headers.get("location", "").startswith("/signin?"), name
        # the static files', webhooks' and sign-in links' tokens are made up here: 404/401
        made_up = {"path", "token"} & set(endpoint.params)
        assert response.status_code < 400 or made_up, (name, response.status_code)


async def test_the_allowlist_names_only_routes_that_exist() -> None:
    assert set(PUBLIC) <= {e.key for e in ENDPOINTS}


async def test_the_route_table_holds_every_operation_of_the_openapi_document(world: World) -> None:
    """The API part of the table is the OpenAPI document (plus the routes that serve it),
    so generating from either covers the same routes."""
    document = world.app.openapi()["paths"]
    operations = {(m.upper(), p) for p, ops in document.items() for m in ops}
    api = {e.key for e in ENDPOINTS if e.kind == "api"}
    assert operations <= api
    assert api - operations == {
        ("GET", f"{API}/openapi.json"),
        ("GET", f"{API}/docs"),
        ("GET", f"{API}/static/{{path}}"),
        ("GET", "/static/{path}"),
    }
