"""API keys and workspaces read lately are not read again for every request
(conveyor.api.auth.RecentReads): a change made through this process applies to the next
request; one made by another process (another store on the same database) within
RECENT_SECONDS."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.api import auth
from conveyor.app import Conveyor
from conveyor.nodes.builtin import build_registry
from conveyor.store import accounts
from conveyor.store.accounts import Role
from tests.api.conftest import Api


class Reads:
    """Counts the store's reads of API keys and workspaces."""

    def __init__(self, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys = self.workspaces = 0
        read = api.store.read

        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            if fn is accounts.api_key_principal:
                self.keys += 1
            elif fn is accounts.find_workspace:
                self.workspaces += 1
            return await read(fn, *args, **kwargs)

        monkeypatch.setattr(api.store, "read", counted)


async def test_a_busy_client_is_authenticated_without_reading_its_key_each_time(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = await api.caller(Role.MEMBER)
    client = api.as_(member)
    reads = Reads(api, monkeypatch)
    for _ in range(5):
        assert (await client.get(f"{api.ws()}/workflows")).status_code == 200
    assert reads.keys <= 2  # the first, and once more if its last use was recorded then
    assert reads.workspaces == 1
    # Revoked through this process: refused at the next request.
    revoked = await api.http.delete(f"{api.ws()}/api-keys/{member.key_id}")
    assert revoked.status_code == 204, revoked.text
    assert (await client.get(f"{api.ws()}/workflows")).status_code == 401


async def test_a_change_made_by_another_process_applies_within_the_recent_window(
    api: Api, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = await api.caller(Role.MEMBER)
    client = api.as_(member)
    assert (await client.get(f"{api.ws()}/workflows")).status_code == 200
    assert (await client.get(f"{api.ws()}/workflows")).status_code == 200  # kept now
    other = await Conveyor.open(database_url, build_registry(entry_points=False))
    try:
        now = other.store.clock.now()
        await other.store.write(
            accounts.revoke_api_key, member.workspace_id, Role.OWNER, member.key_id, now
        )
    finally:
        other.close()
    later = auth.time.monotonic() + auth.RECENT_SECONDS + 0.01
    monkeypatch.setattr(auth.recent(api.conveyor), "clock", lambda: later)
    assert (await client.get(f"{api.ws()}/workflows")).status_code == 401
