"""Members of a workspace over the API: listing, granting and removing, and the rules the
settings page shares (only owners touch owners; a workspace keeps an owner)."""

from __future__ import annotations

from conveyor.store.accounts import Role
from tests.api.conftest import Api
from tests.api.support import problem_of


async def test_members_are_listed_granted_and_removed_by_the_rules(api: Api) -> None:
    admin = await api.caller(Role.ADMIN)
    viewer = await api.caller(Role.VIEWER)
    members = f"{api.ws()}/members"
    listed = (await api.as_(viewer).get(members)).json()
    assert {m["email"]: m["role"] for m in listed} == {
        api.owner.email: "owner",
        admin.email: "admin",
        viewer.email: "viewer",
    }
    as_admin = api.as_(admin)
    changed = await as_admin.put(members, json={"email": viewer.email, "role": "member"})
    assert changed.json() == {"user_id": viewer.user_id, "email": viewer.email, "role": "member"}
    problem_of(await as_admin.put(members, json={"email": api.owner.email, "role": "viewer"}), 403)
    problem_of(await as_admin.delete(f"{members}/{api.owner.user_id}"), 403)
    problem_of(await as_admin.put(members, json={"email": "nobody@x.org", "role": "viewer"}), 404)
    problem_of(await as_admin.delete(f"{members}/no-such-user"), 404)

    # the last owner stays, whoever asks
    problem_of(await api.http.delete(f"{members}/{api.owner.user_id}"), 409)
    demote = {"email": api.owner.email, "role": "admin"}
    problem_of(await api.http.put(members, json=demote), 409)

    # removed: the member's key no longer acts here
    assert (await api.as_(viewer).get(f"{api.ws()}/workflows")).status_code == 200
    assert (await as_admin.delete(f"{members}/{viewer.user_id}")).status_code == 204
    problem_of(await api.as_(viewer).get(f"{api.ws()}/workflows"), 401)
    emails = [m["email"] for m in (await api.http.get(members)).json()]
    assert sorted(emails) == sorted([api.owner.email, admin.email])
