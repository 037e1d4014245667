"""CSRF protection of cookie sessions: a request made with the session cookie that changes
anything carries the session's CSRF token; API keys need none; logins from another site's
pages are refused."""

from __future__ import annotations

import httpx
import pytest

from conveyor.store import accounts
from tests.api.conftest import Api
from tests.api.support import API, problem_of, transform


async def signed_in(api: Api, base_url: str = "http://test") -> tuple[httpx.AsyncClient, str]:
    """A browser-like client after logging in: the cookie jar holds the session."""
    client = api.new_client()
    client.base_url = httpx.URL(base_url)
    response = await client.post(
        f"{API}/auth/login", json={"email": api.owner.email, "password": api.owner.password}
    )
    assert response.status_code == 200, response.text
    return client, response.json()["csrf_token"]


async def test_a_cookie_request_that_changes_something_needs_the_token(api: Api) -> None:
    client, token = await signed_in(api)
    url = f"{api.ws()}/workflows"
    body = {"definition": transform("by-cookie")}

    missing = problem_of(await client.post(url, json=body), 403)
    assert "CSRF token" in missing["detail"]
    wrong = await client.post(url, json=body, headers={"X-CSRF-Token": "0" * 64})
    problem_of(wrong, 403)
    other = await client.post(
        url, json=body, headers={"X-CSRF-Token": accounts.csrf_token("another session")}
    )
    problem_of(other, 403)
    assert (await api.http.get(url)).json()["items"] == []  # none of them did anything

    made = await client.post(url, json=body, headers={"X-CSRF-Token": token})
    assert made.status_code == 201, made.text
    # reads need no token
    assert (await client.get(url)).status_code == 200
    # every method that changes state is covered, not only POST
    problem_of(await client.put(f"{url}/by-cookie", json=body), 403)
    problem_of(await client.delete(f"{api.ws()}/api-keys/{api.owner.key_id}"), 403)
    problem_of(await client.patch(api.ws(), json={"max_running_per_user": 3}), 403)
    problem_of(await client.post(f"{API}/auth/logout"), 403)
    out = await client.post(f"{API}/auth/logout", headers={"X-CSRF-Token": token})
    assert out.status_code == 204


async def test_the_token_is_derived_from_the_session_and_shown_to_its_user(api: Api) -> None:
    client, token = await signed_in(api)
    session = client.cookies["conveyor_session"]
    assert token == accounts.csrf_token(session) != accounts.csrf_token(session + "x")
    assert session not in token
    me = await client.get(f"{API}/me")
    assert me.json()["csrf_token"] == token
    # a second session has a token of its own
    _, second = await signed_in(api)
    assert second != token
    # API keys have no session, so no token
    assert (await api.http.get(f"{API}/me")).json()["csrf_token"] is None


async def test_bearer_keys_need_no_token_even_with_a_cookie_beside_them(api: Api) -> None:
    response = await api.http.post(
        f"{api.ws()}/workflows", json={"definition": transform("by-key")}
    )
    assert response.status_code == 201, response.text
    client, _ = await signed_in(api)
    client.headers.update(api.owner.headers)
    both = await client.post(f"{api.ws()}/workflows", json={"definition": transform("both")})
    assert both.status_code == 201, both.text


async def test_a_forged_cookie_is_still_401_not_403(api: Api) -> None:
    client = api.new_client({"Cookie": "conveyor_session=forged"})
    problem_of(await client.post(f"{api.ws()}/workflows", json={}), 401)


@pytest.mark.parametrize(
    ("host", "origin", "allowed"),
    [
        ("test", None, True),
        ("test", "http://test", True),
        ("conveyor.example.com", "https://conveyor.example.com", True),
        ("conveyor.example.com:8443", "https://conveyor.example.com:8443", True),
        ("conveyor.example.com:443", "https://conveyor.example.com", True),
        ("127.0.0.1:8080", "http://127.0.0.1:8080", True),
        ("test", "http://evil.example", False),
        ("test", "http://test:8080", False),
        ("conveyor.example.com", "https://conveyor.example.com.evil.example", False),
        ("test", "null", False),
        ("test", "http://test:99999", False),
    ],
)
async def test_login_from_another_sites_page_is_refused(
    api: Api, host: str, origin: str | None, allowed: bool
) -> None:
    headers = {"Host": host, **({"Origin": origin} if origin else {})}
    response = await api.new_client().post(
        f"{API}/auth/login",
        json={"email": api.owner.email, "password": api.owner.password},
        headers=headers,
    )
    if allowed:
        assert response.status_code == 200, response.text
    else:
        assert "cross-origin" in problem_of(response, 403)["detail"]
        assert "set-cookie" not in response.headers


async def test_the_session_cookie_is_httponly_lax_and_secure_over_https(api: Api) -> None:
    for base, secure in (("http://test", False), ("https://test", True)):
        client = api.new_client()
        client.base_url = httpx.URL(base)
        response = await client.post(
            f"{API}/auth/login", json={"email": api.owner.email, "password": api.owner.password}
        )
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        assert ("secure" in cookie.replace("samesite", "")) is secure
