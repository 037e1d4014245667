"""Accounts on real databases: users, sessions, API keys and roles."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.app import Conveyor
from conveyor.errors import Conflict, Forbidden, InputError, NotFound
from conveyor.store import accounts
from conveyor.store.accounts import Role


async def test_users_sessions_and_keys(conveyor: Conveyor) -> None:
    store = conveyor.store
    now = store.clock.now()
    user = await store.write(accounts.create_user, "Ann@Example.com", "correct horse", now)
    with pytest.raises(Conflict):
        await store.write(accounts.create_user, "ann@example.com", "another pass", now)
    with pytest.raises(InputError):
        await store.write(accounts.create_user, "bob@example.com", "short", now)
    await store.write(accounts.set_role, user, conveyor.workspace_id, Role.MEMBER, now)
    assert await store.write(accounts.authenticate, "ann@example.com", "wrong", now) is None
    assert await store.write(accounts.authenticate, "nobody@example.com", "x", now) is None
    assert await store.write(accounts.authenticate, "ANN@example.com", "correct horse", now) == user
    token = await store.write(accounts.create_session, user, now, timedelta(hours=1))
    principal = await store.read(accounts.session_principal, token, now)
    assert principal is not None and principal.role_in(conveyor.workspace_id) == Role.MEMBER
    later = now + timedelta(hours=2)
    assert await store.read(accounts.session_principal, token, later) is None

    # Many keys, so some secrets contain "_" (the key format's separator).
    for _ in range(20):
        key, row = await store.write(
            accounts.create_api_key, conveyor.workspace_id, user, "ci", Role.ADMIN, now
        )
        assert "key_hash" not in row and key.startswith(f"cvk_{row['prefix']}_")
        found = await store.write(accounts.api_key_principal, key, now)
        assert found is not None
        # A key never exceeds its user's own role.
        assert found.role_in(conveyor.workspace_id) == Role.MEMBER
    assert await store.write(accounts.api_key_principal, key + "x", now) is None
    # Use is recorded at most once a minute, so authenticating stays a read.
    assert found.touch and found.api_key_id == row["id"]
    await store.write(accounts.touch_api_key, row["id"], now)
    again = await store.read(accounts.api_key_principal, key, now + timedelta(seconds=30))
    assert again is not None and not again.touch
    later = await store.read(accounts.api_key_principal, key, now + timedelta(minutes=2))
    assert later is not None and later.touch
    owner = await store.write(accounts.create_user, "own@example.com", "correct horse", now)
    await store.write(accounts.set_role, owner, conveyor.workspace_id, Role.OWNER, now)
    owner_key, owner_row = await store.write(
        accounts.create_api_key, conveyor.workspace_id, owner, "deploy", Role.OWNER, now
    )
    with pytest.raises(Forbidden, match="only an owner can revoke a key with the role owner"):
        await store.write(
            accounts.revoke_api_key, conveyor.workspace_id, Role.ADMIN, owner_row["id"], now
        )
    assert await store.read(accounts.api_key_principal, owner_key, now) is not None
    with pytest.raises(NotFound):
        await store.write(accounts.revoke_api_key, conveyor.workspace_id, Role.OWNER, "nope", now)
    await store.write(accounts.revoke_api_key, conveyor.workspace_id, Role.ADMIN, row["id"], now)
    assert await store.write(accounts.api_key_principal, key, now) is None
    listed = await store.read(accounts.list_api_keys, conveyor.workspace_id)
    assert len(listed) == 21 and all("key_hash" not in k for k in listed)
