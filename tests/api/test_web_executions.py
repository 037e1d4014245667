"""The executions page's server side, in-process: cursor pages that cover every execution
once, the rows partial by id (scoped to the workspace), and filters that the page refuses or
explains, on both backends."""

from __future__ import annotations

import re
from datetime import UTC, timedelta

import httpx
import pytest

from conveyor import web
from conveyor.store.accounts import Role
from conveyor.web.pages import executions as page
from tests.api.conftest import Api, Caller
from tests.api.support import transform

ROW = re.compile(r'<tr data-execution-id="([0-9a-f]+)"')
OLDER = re.compile(r'<a class="button" rel="next" href="([^"]+)">')


async def signed_in(api: Api, caller: Caller) -> httpx.AsyncClient:
    client = api.new_client()
    login = await client.post(
        "/api/v1/auth/login", json={"email": caller.email, "password": caller.password}
    )
    assert login.status_code == 200, login.text
    return client


async def shown(browser: httpx.AsyncClient, query: str) -> list[str]:
    """The executions the page lists for ``query``."""
    response = await browser.get(f"/w/default/executions?{query}")
    assert response.status_code == 200, response.text
    return ROW.findall(response.text)


@pytest.fixture
async def browser(api: Api) -> httpx.AsyncClient:
    """A signed-in session of the owner, on the API's app with the dashboard installed."""
    web.install(api.app)
    return await signed_in(api, api.owner)


async def test_older_pages_follow_the_cursor_and_show_each_execution_once(
    api: Api, browser: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(page, "PAGE_SIZE", 2)
    await api.create(transform("paged"))
    made = [await api.execute("paged", {"i": i}) for i in range(5)]
    for execution_id in made:
        await api.until_finished(execution_id)

    seen: list[str] = []
    url: str | None = "/w/default/executions?workflow=paged&status=succeeded"
    while url is not None:
        response = await browser.get(url.replace("&amp;", "&"))
        assert response.status_code == 200, response.text
        seen.extend(ROW.findall(response.text))
        older = OLDER.search(response.text)
        url = older.group(1) if older else None
        assert len(seen) <= 5, "the pages do not end"
        if url is not None:
            assert "workflow=paged" in url and "status=succeeded" in url  # filters kept
    assert seen == list(reversed(made))


async def test_rows_by_id_render_alone_and_only_this_workspace(
    api: Api, browser: httpx.AsyncClient
) -> None:
    await api.create(transform("rows"))
    mine = [await api.execute("rows", {"i": i}) for i in range(2)]
    other = await api.caller(Role.OWNER, "other")
    as_other = api.as_(other)
    created = await as_other.post(
        f"{api.ws('other')}/workflows", json={"definition": transform("rows")}
    )
    assert created.status_code == 201, created.text
    theirs = await api.execute("rows", {}, as_other, workspace="other")
    for execution_id in mine:
        await api.until_finished(execution_id)

    response = await browser.get(
        "/w/default/executions/rows", params=[("id", mine[1]), ("id", theirs), ("id", mine[0])]
    )
    assert response.status_code == 200, response.text
    assert ROW.findall(response.text) == [mine[1], mine[0]]
    assert "<html" not in response.text
    assert 'name="selected"' in response.text


async def test_bad_filters_are_refused_or_explained(api: Api, browser: httpx.AsyncClient) -> None:
    refused = await browser.get("/w/default/executions?status=finished")
    assert refused.status_code == 400
    assert "unknown status" in refused.text
    bad_time = await browser.get("/w/default/executions?from=yesterday")
    assert bad_time.status_code == 400
    missing = await browser.get("/w/default/executions?workflow=nowhere")
    assert missing.status_code == 200
    assert 'role="alert"' in missing.text and "nowhere" in missing.text


async def test_a_viewer_gets_the_table_without_checkboxes_or_bulk_actions(api: Api) -> None:
    web.install(api.app)
    await api.create(transform("seen"))
    await api.until_finished(await api.execute("seen", {}))
    viewer = await signed_in(api, await api.caller(Role.VIEWER))
    response = await viewer.get("/w/default/executions")
    assert response.status_code == 200, response.text
    assert len(ROW.findall(response.text)) == 1
    assert 'name="selected"' not in response.text
    assert "Bulk actions" not in response.text
    assert "executions-bulk.js" not in response.text


async def test_the_time_range_is_taken_in_utc(api: Api, browser: httpx.AsyncClient) -> None:
    await api.create(transform("timed"))
    execution_id = await api.execute("timed", {})
    row = await api.until_finished(execution_id)
    created = row["created_at"].astimezone(UTC).replace(tzinfo=None)
    minute = created.replace(second=0, microsecond=0)  # as a datetime-local field sends it

    after = (minute + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    assert await shown(browser, f"from={minute:%Y-%m-%dT%H:%M}") == [execution_id]
    assert await shown(browser, f"to={after}") == [execution_id]
    assert await shown(browser, f"from={after}") == []
    assert await shown(browser, f"to={minute:%Y-%m-%dT%H:%M}&from=2000-01-01T00:00") == []
