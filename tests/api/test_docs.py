"""The interactive API docs work without internet: the page names no other host, and the
Swagger UI it loads is served from the package."""

from __future__ import annotations

import re

from tests.api.conftest import Api
from tests.api.support import API

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


async def test_the_docs_page_loads_only_packaged_assets(api: Api) -> None:
    client = api.new_client()
    page = await client.get(f"{API}/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "SwaggerUIBundle" in html
    assert not re.search(r"(?:https?:)?//", html), html  # no CDN, no other host at all
    assets = ASSET.findall(html)
    kinds = {"js": "javascript", "css": "text/css", "png": "image/png"}
    assert sorted(a.rsplit(".", 1)[-1] for a in assets) == sorted(kinds), assets
    for asset in assets:
        assert asset.startswith(f"{API}/static/vendor/swagger-ui-"), asset
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert kinds[asset.rsplit(".", 1)[-1]] in response.headers["content-type"], asset
        assert len(response.content) > 100, asset
    assert f"url: '{API}/openapi.json'" in html
    assert '"validatorUrl": null' in html  # Swagger UI would otherwise call its validator


async def test_redoc_is_not_served(api: Api) -> None:
    client = api.new_client()
    for path in (f"{API}/redoc", "/redoc", "/docs"):
        assert (await client.get(path)).status_code == 404, path
