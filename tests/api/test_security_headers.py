"""Pages carry the security headers, API answers do not pay for them (plain ASGI)."""

from __future__ import annotations

from conveyor import web
from conveyor.web.csp import CSP
from tests.api.conftest import Api


async def test_pages_static_files_and_api_answers(api: Api) -> None:
    web.install(api.app)
    client = api.new_client()
    login = await client.post(
        "/api/v1/auth/login", json={"email": api.owner.email, "password": api.owner.password}
    )
    assert login.status_code == 200, login.text

    page = await client.get("/w/default/workflows")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"

    asset = await client.get("/static/css/conveyor.css")
    assert asset.status_code == 200
    assert asset.headers["content-security-policy"] == CSP
    assert "no-store" not in asset.headers.get("cache-control", "")

    answer = await client.get("/api/v1/workspaces/default/workflows")
    assert answer.status_code == 200
    assert "content-security-policy" not in answer.headers

    # An error page is a page too.
    missing = await client.get("/w/default/workflows/does-not-exist")
    assert missing.status_code == 404
    assert missing.headers["content-security-policy"] == CSP
